"""Blender-side code (imports ``bpy``): procedural building, scene loading, camera bridge, dataset rendering.

Everything convention-related comes from :mod:`..core`; this package only moves numbers between Blender
objects and those conventions.
"""
