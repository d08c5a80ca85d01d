"""Where the extension may write: its user folder (``extension_path_user``) or folders the user chose."""
from pathlib import Path

#: The top-level package name: ``bl_ext.<repo>.building_pose`` when installed, ``pose_addon`` in a checkout.
PACKAGE = __package__


def user_dir(*parts: str, create: bool = True) -> Path:
    """A folder under the extension's user directory (falls back to a temp folder when not installed)."""
    import bpy

    try:
        base = Path(bpy.utils.extension_path_user(PACKAGE, path="", create=create))
    except ValueError:  # not installed as an extension (e.g. imported from a checkout in tests)
        import tempfile

        base = Path(tempfile.gettempdir()) / "building_pose_user"
    p = base.joinpath(*parts)
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def data_dir(context=None) -> Path:
    """The data folder from the preferences, else ``<user dir>/data``."""
    import bpy

    from . import prefs

    p = prefs.get(context)
    if p and p.data_dir:
        return Path(bpy.path.abspath(p.data_dir))
    return user_dir("data")


class UnsavedPathError(ValueError):
    """A blend-relative (``//``) path in a file that has not been saved yet."""


def resolve(raw: str, what: str) -> Path:
    """An absolute path for a path property; ``//`` (next to the .blend) in an unsaved file is refused with a
    message naming ``what`` rather than silently resolved against the current directory."""
    import bpy

    if not raw:
        raise ValueError(f"Choose the {what} first")
    if raw.startswith("//") and not bpy.data.filepath:
        raise UnsavedPathError(f"The {what} '{raw}' is relative to the .blend file, which is not saved yet: save "
                               "the file or choose an absolute path")
    return Path(bpy.path.abspath(raw))
