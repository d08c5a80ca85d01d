"""Method ``aliked+lightglue``: retrieval + aliked+lightglue matching + PnP on depth-lifted points (see :mod:`._matcher`)."""
from ._matcher import make_run

__all__ = ["run"]

run = make_run("aliked+lightglue")
