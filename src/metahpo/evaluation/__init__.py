"""The fixed held-out protocol: every trained learner adapted and scored on meta_test (and meta_ood)."""
