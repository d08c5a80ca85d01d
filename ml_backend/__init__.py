"""Out-of-process ML worker: localizes a photo against a rendered dataset of a building model.

Pipeline (hloc-style): render a dataset through Blender (:mod:`.blender_runner`), extract SIFT features of the
reference views and lift them to 3D through the rendered planar depth (:mod:`.database`), retrieve the nearest
references of a query (:mod:`.retrieval`), match (:mod:`.matching`), and solve PnP (:mod:`.pnp`).

Conventions come from :mod:`pose_addon.core` (poses ``cam_from_world`` in OpenCV axes, world = Blender world,
Z up, metres; OpenCV pixel centres).
"""
