"""Method ``xfeat+lighterglue``: retrieval + xfeat+lighterglue matching + PnP on depth-lifted points
(see :mod:`._matcher`)."""
from ._matcher import make_estimate, make_run

__all__ = ["run", "estimate_images"]

run = make_run("xfeat+lighterglue")
estimate_images = make_estimate("xfeat+lighterglue")
