"""Numba point-cloud kernels: pure numpy-in/numpy-out functions, each with a numpy reference.

Modules (import the one you need; nothing here is imported eagerly, so that importing
``perception`` does not load Numba):

* ``voxelize``: ``hard_voxelize`` (spconv/mmcv semantics, bit-identical), ``dynamic_voxelize``
* ``interleave``: ``interleave_sweeps`` (round-robin over sweeps before a first-come cap)
* ``pillars``: ``pillar_features`` (PointPillars decorations fused with voxelization)
* ``scatter``: ``scatter_to_bev`` (pillar features to a dense (C, H, W) canvas)
* ``bev_pool``: ``bev_pool``, ``bev_pool_backward``, ``bev_pool_prepare`` (lift-splat)
* ``painting``: ``paint_points`` (project points into cameras, gather features)
* ``ultrasonic_raster``: ``ultrasonic_raster`` (cones + echoes to BEV evidence)
* ``nms``: ``circle_nms`` (BEV centre NMS)
* ``crop``: ``crop_points`` (points inside the grid's box)
* ``window_resample``: ``resample_windows`` (image windows to fixed-size crops, all at once)
"""
