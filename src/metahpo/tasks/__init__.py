"""Few-shot task data: sinusoid regression, image classes and episodes, and their storage on disk."""

FAMILIES = ("sinusoid", "digits", "image_folder")
CLASSIFICATION_FAMILIES = ("digits", "image_folder")
SPLIT_BY = ("character", "alphabet")  # image folders: the source classes that splits keep together
DIGITS_SIDE = 8  # scikit-learn's digits are 8x8
