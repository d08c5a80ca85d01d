"""Registration of every Blender class from one list, :data:`CLASSES`, in order; unregistered in reverse.
Imported only inside Blender. ``tests/blender/test_registration.py`` fails when a panel, operator, list, menu or
property group defined in the package is missing from it."""
import bpy

from . import (
    draw,
    ops_annotate,
    ops_cameras,
    ops_dataset,
    ops_estimates,
    ops_io,
    ops_keypoints,
    ops_models,
    ops_worker,
    prefs,
    props,
    ui,
)

#: every class the extension registers (property groups before the groups and classes that point at them)
CLASSES = (
    prefs.POSE_OT_create_environment, prefs.POSE_OT_check_environment, prefs.POSE_AP_preferences,
    props.POSE_PG_sampling, props.POSE_PG_pose_item, props.POSE_PG_render, props.POSE_PG_keypoint,
    props.POSE_PG_keypoints, props.POSE_PG_estimate, props.POSE_PG_model_item, props.POSE_PG_compare,
    props.POSE_PG_settings, props.POSE_PG_runtime,
    ops_cameras.POSE_OT_sample_cameras, ops_cameras.POSE_OT_clear_cameras, ops_cameras.POSE_OT_fit_sampling,
    ops_dataset.POSE_OT_render_dataset,
    ops_keypoints.POSE_OT_place_keypoint, ops_keypoints.POSE_OT_remove_keypoint, ops_keypoints.POSE_OT_move_keypoint,
    ops_keypoints.POSE_OT_select_keypoint, ops_keypoints.POSE_OT_export_keypoints,
    ops_keypoints.POSE_OT_import_keypoints, ops_keypoints.POSE_OT_suggest_keypoints,
    ops_keypoints.POSE_OT_count_views,
    ops_annotate.POSE_OT_add_photo_camera, ops_annotate.POSE_OT_annotate_point, ops_annotate.POSE_OT_solve_annotation,
    ops_annotate.POSE_OT_update_annotation_errors, ops_annotate.POSE_OT_export_annotation,
    ops_estimates.POSE_OT_compare_estimates, ops_estimates.POSE_OT_export_estimates_csv,
    ops_estimates.POSE_OT_clear_estimates, ops_estimates.POSE_OT_estimate_camera,
    ops_worker.POSE_OT_worker_start, ops_worker.POSE_OT_worker_stop, ops_worker.POSE_OT_worker_restart,
    ops_worker.POSE_OT_worker_ping, ops_worker.POSE_OT_worker_open_log,
    ops_models.POSE_OT_refresh_models, ops_models.POSE_OT_use_model, ops_models.POSE_OT_start_model_job,
    ops_models.POSE_OT_cancel_model_job,
    ops_io.POSE_OT_import_colmap, ops_io.POSE_OT_export_colmap, ops_io.POSE_OT_import_nerfstudio,
    ops_io.POSE_OT_export_nerfstudio, ops_io.POSE_OT_import_localize, ops_io.POSE_OT_export_dataset,
    ui.POSE_PT_cameras, ui.POSE_PT_dataset, ui.POSE_UL_keypoints, ui.POSE_PT_keypoints, ui.POSE_PT_annotate,
    ui.POSE_PT_estimates, ui.POSE_PT_worker, ui.POSE_UL_models, ui.POSE_PT_models,
)
CLI_ID = "building_pose"
_cli_handle = None


def _cli(argv: list) -> int:
    from . import headless

    return headless.main(list(argv))


def register() -> None:
    global _cli_handle
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    props.register_properties()
    ops_io.register_menus()
    ops_keypoints.register_handlers()
    draw.register_handlers()
    if hasattr(bpy.utils, "register_cli_command"):
        _cli_handle = bpy.utils.register_cli_command(CLI_ID, _cli)


def unregister() -> None:
    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ops_worker.unregister_runtime()
    prefs.unregister_runtime()
    draw.unregister_handlers()
    ops_keypoints.unregister_handlers()
    ops_io.unregister_menus()
    props.unregister_properties()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
