"""Direct pose regression: cached image features -> BuildingPoseNetCached -> cam_from_world.

Modules: :mod:`.extractors` (feature extractor registry), :mod:`.features` (HDF5 feature cache),
:mod:`.model` (the network and pose parametrization), :mod:`.train` (training command), :mod:`.infer`
(batch inference), :mod:`.refine` (render-and-compare refinement), :mod:`.trainset` (training views).
"""
