"""Registration of every Blender class, in order; unregistered in reverse. Imported only inside Blender."""
import bpy

from . import (draw, ops_annotate, ops_cameras, ops_dataset, ops_estimates, ops_keypoints, ops_models, ops_worker,
               prefs, props, ui)

MODULES = (prefs, props, ops_cameras, ops_dataset, ops_keypoints, ops_annotate, ops_estimates, ops_worker,
           ops_models, ui)
CLI_ID = "building_pose"
_cli_handle = None


def _cli(argv: list) -> int:
    from . import headless

    return headless.main(list(argv))


def register() -> None:
    global _cli_handle
    for module in MODULES:
        for cls in module.classes:
            bpy.utils.register_class(cls)
    props.register_properties()
    draw.register_handlers()
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command(CLI_ID, _cli)


def unregister() -> None:
    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ops_worker.unregister_runtime()
    draw.unregister_handlers()
    props.unregister_properties()
    for module in reversed(MODULES):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
