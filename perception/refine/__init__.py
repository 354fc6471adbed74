"""Cascade fusion: LiDAR detections re-scored by a small network on full-resolution camera crops.

The ``lidar_camera_refine`` variant (``FusionKind.REFINE``) runs ``lidar_only``'s layers, decodes
their detections, cuts each of the best ``max_proposals`` out of the camera that sees it
(``crops``) and re-decides its class and score (``network``); ``train`` fits the crop network on
the frozen first stage's own proposals.
"""
