"""Method ``disk+lightglue``: retrieval + disk+lightglue matching + PnP on depth-lifted points (see :mod:`._matcher`)."""
from ._matcher import make_run

__all__ = ["run"]

run = make_run("disk+lightglue")
