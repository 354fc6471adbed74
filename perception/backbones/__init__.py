"""Per-modality backbones: each turns one sensor's input into a BEV feature map on one grid."""
