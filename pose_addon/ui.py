"""Sidebar panels: the "Building Pose" tab of the 3D viewport."""
import bpy


class _PosePanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Building Pose"


class POSE_PT_cameras(_PosePanel, bpy.types.Panel):
    bl_label = "Cameras"

    def draw(self, context):
        s = context.scene.pose_tools.sampling
        col = self.layout.column(align=True)
        col.prop(s, "layout")
        col.prop(s, "shape")
        col.prop(s, "count")
        if s.layout == "rings":
            col.prop(s, "rings")
        row = col.row(align=True)
        row.prop(s, "distance_min", text="Distance")
        row.prop(s, "distance_max", text="")
        if s.shape == "HEMISPHERE":
            row = col.row(align=True)
            row.prop(s, "elevation_min", text="Elevation")
            row.prop(s, "elevation_max", text="")
        row = col.row(align=True)
        row.prop(s, "azimuth_min", text="Azimuth")
        row.prop(s, "azimuth_max", text="")
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
        col = self.layout.column(align=True)
        col.prop(r, "output_dir")
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
        row = col.row(align=True)
        row.prop(r, "n_train")
        row.prop(r, "n_val")
        row.prop(r, "n_test")
        box = self.layout.box()
        box.label(text="Lighting and noise (randomized per frame)")
        sub = box.column(align=True)
        row = sub.row(align=True)
        row.prop(r, "sun_elevation_min", text="Sun Elev")
        row.prop(r, "sun_elevation_max", text="")
        row = sub.row(align=True)
        row.prop(r, "sun_strength_min", text="Sun")
        row.prop(r, "sun_strength_max", text="")
        row = sub.row(align=True)
        row.prop(r, "world_strength_min", text="Sky")
        row.prop(r, "world_strength_max", text="")
        sub.prop(r, "world_color")
        sub.prop(r, "world_color_jitter")
        sub.prop(r, "hdri_dir")
        sub.prop(r, "noise")
        if r.running:
            self.layout.prop(r, "progress", text=r.status or "Rendering", slider=True)
            self.layout.label(text="Esc cancels; finished frames are kept", icon="INFO")
        else:
            self.layout.operator("building_pose.render_dataset", icon="RENDER_ANIMATION")
            if r.status:
                self.layout.label(text=r.status)


class POSE_UL_keypoints(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        row.label(text=f"{index:2d}")
        row.prop(item, "name", text="", emboss=False, icon="EMPTY_AXIS")


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
        if e.status:
            box.prop(e, "progress", text=e.status, slider=True)
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
            for obj in cams:
                grid.label(text=obj.name)
                grid.label(text=str(obj.get("pose_inliers", "")))
                grid.label(text=f"{obj['pose_t_err_m']:.3f}" if "pose_t_err_m" in obj else "-")
                grid.label(text=f"{obj['pose_R_err_deg']:.2f}" if "pose_R_err_deg" in obj else "-")
        layout.prop(c, "csv_path")
        layout.operator("building_pose.export_estimates_csv", icon="EXPORT")


class POSE_PT_worker(_PosePanel, bpy.types.Panel):
    bl_label = "Worker"

    def draw(self, context):
        from . import ops_worker

        ops_worker.draw_panel(self.layout, context)


class POSE_UL_models(bpy.types.UIList):
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
        for kind, label, _ in (("build_database", "Build Matching Database", ""),
                               ("train_regression", "Train Regression", ""),
                               ("train_keypoints", "Train Keypoints", "")):
            col.operator("building_pose.start_model_job", text=label).kind = kind
        if s.models_job:
            layout.operator("building_pose.cancel_model_job", icon="CANCEL")
        row = layout.row()
        row.template_list("POSE_UL_models", "", s, "models", s, "models_index", rows=4)
        col = row.column(align=True)
        col.operator("building_pose.refresh_models", icon="FILE_REFRESH", text="")
        col.operator("building_pose.use_model", icon="CHECKMARK", text="")


classes = (POSE_PT_cameras, POSE_PT_dataset, POSE_UL_keypoints, POSE_PT_keypoints, POSE_PT_annotate,
           POSE_PT_estimates, POSE_PT_worker)
