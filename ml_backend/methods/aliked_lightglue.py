"""Method ``aliked+lightglue``: retrieval + aliked+lightglue matching + PnP on depth-lifted points
(see :mod:`._matcher`)."""
from ._matcher import make_estimate, make_run

__all__ = ["run", "estimate_images"]

run = make_run("aliked+lightglue")
estimate_images = make_estimate("aliked+lightglue")
