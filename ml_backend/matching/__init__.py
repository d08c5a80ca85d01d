"""The matching method's pipeline (hloc-style), one module per step:

* :mod:`.extractors` -- local feature extractors, one plugin module each (SIFT, COLMAP SIFT, ALIKED, DISK, XFeat,
  SuperPoint);
* :mod:`.matchers` -- pair matchers, one plugin module each (nearest neighbour, LightGlue, LighterGlue, LoFTR);
* :mod:`.presets` -- named extractor + matcher confs; every preset but the variants is a localization method;
* :mod:`.database` -- the reference views' features lifted to 3D through rendered depth (:mod:`.lifting`), HDF5;
* :mod:`.retrieval` -- which references a query is matched against (descriptor votes, global descriptors);
* :mod:`.localize` -- retrieval, matching, 2D-3D correspondences and PnP-RANSAC for one image (and the ensemble);
* :mod:`.weights` -- where the learned plugins' weight files are found (never downloaded).
"""
