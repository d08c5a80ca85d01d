"""Method ``disk+lightglue``: retrieval + disk+lightglue matching + PnP on depth-lifted points
(see :mod:`._matcher`)."""
from ._matcher import make_estimate, make_run

__all__ = ["run", "estimate_images"]

run = make_run("disk+lightglue")
estimate_images = make_estimate("disk+lightglue")
