"""Exercise specs, one module per assignment (``a01_single_channel`` ...); each registers its exercises."""
