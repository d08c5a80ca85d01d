import pytest

from ml_backend.scenes import SceneSpecError, parse_scene


def test_procedural():
    s = parse_scene("procedural")
    assert s.kind == "procedural" and s.seed == 0 and s.spec == "procedural:0" and s.key() == "procedural:0"
    assert parse_scene(" procedural:7 ").seed == 7
    assert parse_scene("procedural").longest_side_m() == 15.0
    with pytest.raises(SceneSpecError, match="integer seed"):
        parse_scene("procedural:abc")


def test_mesh_paths(tmp_path):
    with pytest.raises(SceneSpecError, match="scene mesh not found"):
        parse_scene(str(tmp_path / "house.glb"))
    with pytest.raises(SceneSpecError, match="unsupported scene"):
        parse_scene(str(tmp_path / "house.fbx"))
    with pytest.raises(SceneSpecError, match="empty scene"):
        parse_scene("")
    with pytest.raises(SceneSpecError, match="positive"):
        parse_scene("procedural", scale=0.0)
    p = tmp_path / "house.obj"
    p.write_text("v 0 0 0\nv 2 0 0\nv 0 3 0\nf 1 2 3\n")
    s = parse_scene(str(p), scale=5.0)
    assert s.kind == "mesh" and s.path.is_absolute() and s.name == "house"
    k1 = s.key()
    assert "scale=5.0" in k1 and k1 != parse_scene(str(p), scale=4.0).key()
    assert s.longest_side_m() == pytest.approx(15.0)
    p.write_text("v 0 0 0\nv 2 0 0\nv 0 4 0\nf 1 2 3\n")
    assert parse_scene(str(p), scale=5.0).key() != k1  # content hash in the key
    assert parse_scene(str(p)).longest_side_m() == 15.0  # Blender scales the longest side to 15 m


def test_ground_style_is_part_of_the_key(tmp_path):
    assert parse_scene("procedural").key() == "procedural:0"  # default ground: old caches keep their key
    assert parse_scene("procedural", ground="plain").key() == "procedural:0|ground=plain"
    p = tmp_path / "house.obj"
    p.write_text("v 0 0 0\nv 2 0 0\nv 0 3 0\nf 1 2 3\n")
    keys = {parse_scene(str(p), ground=g).key() for g in ("textured", "plain", "none")}
    assert len(keys) == 3
    with pytest.raises(SceneSpecError, match="unknown ground 'grass'"):
        parse_scene("procedural", ground="grass")
