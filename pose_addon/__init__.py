"""Building Pose: a Blender extension for camera sampling, dataset rendering, keypoints and pose overlays.

This top-level module must stay importable without Blender: the worker imports :mod:`pose_addon.core`
(numpy only). ``bpy`` is imported only inside :func:`register` / :func:`unregister` and the ``blender``
subpackage.
"""


def register() -> None:
    from . import registration

    registration.register()


def unregister() -> None:
    from . import registration

    registration.unregister()
