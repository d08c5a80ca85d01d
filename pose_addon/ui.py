"""Sidebar panels: the "Building Pose" tab of the 3D viewport."""
import bpy

from .props import runtime


class _PosePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Building Pose"


def _range(col, data, lo: str, hi: str, text: str) -> None:
    row = col.row(align=True)
    row.prop(data, lo, text=text)
    row.prop(data, hi, text="")


class POSE_PT_cameras(_PosePanel, bpy.types.Panel):
    bl_label = "Cameras"

    def draw(self, context):
        s = context.scene.pose_tools.sampling
        col = self.layout.column(align=True)
        col.prop(s, "placement")
        col.prop(s, "layout")
        col.prop(s, "count")
        if s.layout == "rings":
            col.prop(s, "rings")
        if s.placement == "custom":
            col.prop(s, "shape")
            _range(col, s, "distance_min", "distance_max", "Distance")
            if s.shape == "HEMISPHERE":
                _range(col, s, "elevation_min", "elevation_max", "Elevation")
            row = col.row(align=True)
            row.operator("building_pose.fit_sampling", text="Fit Orbit to Model").preset = "orbit"
            row.operator("building_pose.fit_sampling", text="Fit Aerial").preset = "aerial"
        _range(col, s, "azimuth_min", "azimuth_max", "Azimuth")
        col.prop(s, "roll")
        col.prop(s, "jitter")
        col.prop(s, "min_coverage")
        col.prop(s, "seed")
        col.prop(s, "output")
        if s.output == "POSES":
            col.prop(context.scene.pose_tools, "show_frustums")
        row = self.layout.row(align=True)
        row.operator("building_pose.sample_cameras", icon="OUTLINER_OB_CAMERA")
        row.operator("building_pose.clear_cameras", icon="X")


class POSE_PT_dataset(_PosePanel, bpy.types.Panel):
    bl_label = "Dataset"

    def draw(self, context):
        r = context.scene.pose_tools.render
        rt = runtime(context)
        col = self.layout.column(align=True)
        col.prop(r, "output_dir")
        if r.output_dir.startswith("//") and not bpy.data.filepath:
            col.label(text="Save the .blend first, or choose an absolute folder", icon="ERROR")
        row = col.row(align=True)
        row.prop(r, "width")
        row.prop(r, "height")
        col.prop(r, "lens")
        col.prop(r, "engine")
        col.prop(r, "samples")
        row = col.row(align=True)
        row.prop(r, "depth", toggle=True)
        row.prop(r, "normals", toggle=True)
        row.prop(r, "masks", toggle=True)
        col.prop(r, "bake_resolution")
        row = col.row(align=True)
        row.prop(r, "n_train")
        row.prop(r, "n_val")
        row.prop(r, "n_test")
        box = self.layout.box()
        box.label(text="Lighting and noise (randomized per frame)")
        sub = box.column(align=True)
        _range(sub, r, "sun_elevation_min", "sun_elevation_max", "Sun Elev")
        _range(sub, r, "sun_strength_min", "sun_strength_max", "Sun")
        _range(sub, r, "world_strength_min", "world_strength_max", "Sky")
        sub.prop(r, "world_color")
        sub.prop(r, "world_color_jitter")
        sub.prop(r, "hdri_dir")
        sub.prop(r, "noise")
        if rt.render_running:
            self.layout.progress(factor=rt.render_progress, text=rt.render_status or "Rendering")
            self.layout.label(text="Esc cancels; finished frames are kept", icon="INFO")
        else:
            self.layout.operator("building_pose.render_dataset", icon="RENDER_ANIMATION")
            if rt.render_status:
                self.layout.label(text=rt.render_status)
            row = self.layout.row(align=True)
            row.operator("building_pose.export_dataset", text="COLMAP", icon="EXPORT").format = "COLMAP"
            row.operator("building_pose.export_dataset", text="nerfstudio", icon="EXPORT").format = "NERFSTUDIO"


class POSE_UL_keypoints(bpy.types.UIList):
    """The keypoint list: the name shown and edited is the empty's own, so Outliner renames show at once."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=f"{index:2d}")
        if item.empty is not None:
            row.prop(item.empty, "name", text="", emboss=False, icon="EMPTY_AXIS")
        else:
            row.label(text=f"{item.name} (deleted)", icon="ERROR")
        if item.views >= 0:
            text, low = views_label(item.views, data.views_total, data.min_view_share)
            row.label(text=text, icon="ERROR" if low else "HIDE_OFF")


def views_label(views: int, total: int, share: float) -> tuple[str, bool]:
    """The list row's view count ("12 views") and whether it is below the learnable share of ``total``."""
    from .core.keypoints import min_views

    return f"{views} view{'' if views == 1 else 's'}", views < min_views(total, share)


class POSE_PT_keypoints(_PosePanel, bpy.types.Panel):
    bl_label = "Keypoints"

    def draw(self, context):
        k = context.scene.pose_tools.keypoints
        layout = self.layout
        row = layout.row()
        row.template_list("POSE_UL_keypoints", "", k, "items", k, "active_index", rows=4)
        col = row.column(align=True)
        col.operator("building_pose.place_keypoint", icon="ADD", text="")
        col.operator("building_pose.remove_keypoint", icon="REMOVE", text="")
        col.separator()
        col.operator("building_pose.move_keypoint", icon="TRIA_UP", text="").direction = "UP"
        col.operator("building_pose.move_keypoint", icon="TRIA_DOWN", text="").direction = "DOWN"
        col.operator("building_pose.select_keypoint", icon="RESTRICT_SELECT_OFF", text="")
        layout.prop(k, "snap_to_vertex")
        row = layout.row(align=True)
        row.prop(k, "suggest_count")
        row.operator("building_pose.suggest_keypoints", icon="SHADERFX")
        row = layout.row(align=True)
        row.prop(k, "view_source", text="")
        row.operator("building_pose.count_views", icon="HIDE_OFF")
        if k.views_source:
            from .core.keypoints import min_views

            need = min_views(k.views_total, k.min_view_share)
            low = sum(1 for it in k.items if 0 <= it.views < need)
            layout.label(text=f"{k.views_source}: {low} keypoint{'s' if low > 1 else ''} seen by fewer than {need}"
                         if low else f"{k.views_source}: each keypoint seen by {need} or more",
                         icon="ERROR" if low else "INFO")
        layout.prop(k, "json_path")
        row = layout.row(align=True)
        row.operator("building_pose.import_keypoints", icon="IMPORT")
        row.operator("building_pose.export_keypoints", icon="EXPORT")


class POSE_PT_annotate(_PosePanel, bpy.types.Panel):
    bl_label = "Annotate Photo"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        import json

        layout = self.layout
        layout.operator("building_pose.add_photo_camera", icon="IMAGE_BACKGROUND")
        cam = context.scene.camera
        if cam is None or "pose_annotation" not in cam:
            layout.label(text="Make a photo camera the scene camera to annotate")
            return
        ann = json.loads(cam["pose_annotation"])
        layout.label(text=f"{cam.name}: {len(ann.get('points', {}))} points annotated")
        layout.operator("building_pose.annotate_point", icon="RESTRICT_SELECT_OFF")
        row = layout.row(align=True)
        row.operator("building_pose.solve_annotation", icon="CON_CAMERASOLVER").estimate_focal = False
        row.operator("building_pose.solve_annotation", text="Solve + Focal").estimate_focal = True
        layout.operator("building_pose.update_annotation_errors", icon="FILE_REFRESH")
        for note in (ann.get("solve") or {}).get("notes", []):
            layout.label(text=note[:100], icon="INFO")
        if ann.get("outliers"):
            layout.label(text="Outliers: " + ", ".join(ann["outliers"]), icon="ERROR")
        errors = ann.get("errors_px", {})
        if errors:
            box = layout.box()
            for name, e in errors.items():
                box.label(text=f"{name}: {e:.2f} px", icon="ERROR" if e > 5 else "CHECKMARK")
        layout.operator("building_pose.export_annotation", icon="EXPORT")


class POSE_PT_estimates(_PosePanel, bpy.types.Panel):
    bl_label = "Estimated Cameras"

    def draw(self, context):
        from . import estimates

        settings = context.scene.pose_tools
        rt = runtime(context)
        layout = self.layout
        e = settings.estimate
        box = layout.box()
        box.prop(e, "photo")
        box.prop(e, "method")
        if e.method.startswith("regression"):
            box.prop(e, "checkpoint")
        elif e.method == "keypoints":
            box.prop(e, "model")
        else:
            box.prop(e, "database")
            box.prop(e, "dataset")
        box.prop(e, "intrinsics")
        if e.intrinsics == "preset":
            row = box.row(align=True)
            row.prop(e, "focal_mm")
            row.prop(e, "preset", text="")
        elif e.intrinsics == "calibration":
            box.prop(e, "calibration")
        box.operator("building_pose.estimate_camera", icon="VIEW_CAMERA")
        if rt.estimate_status:
            box.progress(factor=rt.estimate_progress, text=rt.estimate_status)
        layout.operator("building_pose.import_localize", icon="IMPORT")
        layout.prop(settings, "show_estimates")
        c = settings.compare
        layout.prop(c, "truth_camera")
        layout.prop(c, "dataset_dir")
        row = layout.row(align=True)
        row.operator("building_pose.compare_estimates", icon="DRIVER_DISTANCE")
        row.operator("building_pose.clear_estimates", icon="X", text="")
        cams = estimates.estimated_cameras()
        if cams:
            box = layout.box()
            grid = box.grid_flow(columns=4, row_major=True, even_columns=False)
            for head in ("camera", "inliers", "t (m)", "R (deg)"):
                grid.label(text=head)
            for obj in cams[:50]:
                grid.label(text=obj.name)
                grid.label(text=str(obj.get("pose_n_inliers", "")))
                grid.label(text=f"{obj['pose_t_err_m']:.3f}" if "pose_t_err_m" in obj else "-")
                grid.label(text=f"{obj['pose_R_err_deg']:.2f}" if "pose_R_err_deg" in obj else "-")
            if len(cams) > 50:
                box.label(text=f"... and {len(cams) - 50} more (Export CSV for all)")
        layout.prop(c, "csv_path")
        layout.operator("building_pose.export_estimates_csv", icon="EXPORT")


class POSE_PT_worker(_PosePanel, bpy.types.Panel):
    bl_label = "Worker"

    def draw(self, context):
        from . import ops_worker, prefs

        ops_worker.draw_panel(self.layout, context)
        p = prefs.get(context)
        for line in prefs.environment_summary(p):
            if not line.startswith("OK"):
                self.layout.label(text=line[:100], icon="ERROR")
        row = self.layout.row(align=True)
        row.operator("building_pose.check_environment", icon="CHECKMARK")
        row.operator("preferences.addon_show", text="Setup", icon="PREFERENCES").module = __package__


class POSE_UL_models(bpy.types.UIList):
    """Datasets, databases and checkpoints the worker reported: kind, scene, date and the first figures."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        import json

        figs = json.loads(item.figures or "{}")
        short = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in list(figs.items())[:3])
        row = layout.row(align=True)
        row.label(text=item.kind)
        row.label(text=item.scene)
        row.label(text=item.date)
        row.label(text=short)


class POSE_PT_models(_PosePanel, bpy.types.Panel):
    bl_label = "Models"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.pose_tools
        layout = self.layout
        col = layout.column(align=True)
        for kind, label in (("build_database", "Build Matching Database"), ("train_regression", "Train Regression"),
                            ("train_keypoints", "Train Keypoints")):
            col.operator("building_pose.start_model_job", text=label).kind = kind
        if runtime(context).models_job:
            layout.operator("building_pose.cancel_model_job", icon="CANCEL")
        row = layout.row()
        row.template_list("POSE_UL_models", "", s, "models", s, "models_index", rows=4)
        col = row.column(align=True)
        col.operator("building_pose.refresh_models", icon="FILE_REFRESH", text="")
        col.operator("building_pose.use_model", icon="CHECKMARK", text="")
