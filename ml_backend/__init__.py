"""Out-of-process ML worker: localizes a photo against a rendered dataset of a building model.

Methods (:mod:`.methods`, one interface): the matching method (:mod:`.matching`, hloc-style: extract local features
of the reference views and lift them to 3D through the rendered depth, retrieve the nearest references of a query,
match with a preset's extractor and pair matcher, solve PnP with :mod:`.pnp`), regression (:mod:`.regression`) and
keypoints (:mod:`.keypoints`); refinement by rendering (:mod:`.refine`). Renders of datasets come from Blender
(:mod:`.blender_runner`).

Conventions come from :mod:`pose_addon.core` (poses ``cam_from_world`` in OpenCV axes, world = Blender world,
Z up, metres; OpenCV pixel centres).
"""
