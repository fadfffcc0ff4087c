"""Names of the task families and their fixed sizes: what the params know of tasks without importing them."""

FAMILIES = ("sinusoid", "digits", "image_folder")
CLASSIFICATION_FAMILIES = ("digits", "image_folder")
SPLIT_BY = ("character", "alphabet")  # image folders: the source classes that splits keep together
DIGITS_SIDE = 8  # scikit-learn's digits are 8x8
