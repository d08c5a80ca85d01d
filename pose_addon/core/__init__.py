"""Bpy-free core shared by the Blender extension and the ``ml_backend`` worker.

Everything here depends on numpy alone (1.26 inside Blender, 2.x in the worker) and defines the product's
conventions once:

* :mod:`.poses` -- rotations, quaternions (w, x, y, z), 6D, axis-angle, SE(3) helpers;
* :mod:`.cameras` -- camera frames (Blender vs OpenCV axes) and intrinsics from/to Blender camera settings;
* :mod:`.sampling` -- deterministic camera samplers around a target;
* :mod:`.dataset` -- the on-disk dataset schema (manifest, depth, keypoints) with readers, writers and exports.

World frame: Blender's world, Z up, metres. Stored poses are ``cam_from_world`` in OpenCV camera axes
(+X right, +Y down, +Z forward).
"""
