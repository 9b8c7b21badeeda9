# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole job in Blender: footage files -> worker thread -> Capture -> scene; the operator, its
errors and cancellation; the command line. Uses a tiny real ONNX model (see contract_models)."""
from pathlib import Path

import bpy
import numpy as np
import pytest

pytest.importorskip("onnxruntime")  # the Blender 4.2 environment has none of its own
pytest.importorskip("onnx")

from face_anything_addon.blender.footage import open_footage  # noqa: E402
from face_anything_addon.blender.job import ReconstructJob  # noqa: E402
from face_anything_addon.core.capture import Capture  # noqa: E402
from face_anything_addon.core.capture_run import CaptureSettings  # noqa: E402
from face_anything_addon.core.pipeline import PipelineSettings  # noqa: E402
from face_anything_addon.core.solve import SolveSettings  # noqa: E402
from tests.blender.footage_helpers import (  # noqa: E402
    H, W, disc_sequence, textured_disc, write_png)
from tests.contract_models import contract_metadata, make_model  # noqa: E402

@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    return disc_sequence(tmp_path_factory.mktemp("shot"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("model") / "tiny.onnx", mask=True,
                      metadata=contract_metadata(max_window="2"))


def settings(**kw):
    kw.setdefault("resolution", 84)
    return CaptureSettings(pipeline=PipelineSettings(**kw), provider="CPU",
                           grid_vertices=300)


def test_job_runs_footage_through_a_worker_thread(empty_file, sequence, model):
    footage = open_footage(sequence)
    job = ReconstructJob(footage, settings(), model)
    phases = []
    job.start()
    while not job.tick():
        phases.append(job.status.phase)
    assert job.status.phase == "done", job.status.message
    cap = job.capture
    assert list(cap.frame_numbers) == [1, 2, 3, 4, 5, 6]
    assert cap.footage_size == (W, H) and cap.visibility[0].mean() > 0.5
    assert "detect" in phases and "predict" in phases
    assert job.status.providers == ["CPUExecutionProvider"]
    # the disc moves 2 px right per frame: so do the tracked vertices
    xs = np.array([np.median(p[v][:, 0] / p[v][:, 2]) for p, v in zip(cap.positions,
                                                                      cap.visibility)])
    assert np.all(np.diff(xs) > 0), xs
    # the disc's colour gradient (its canonical map) spans many cells: no off-face warning
    assert min(cap.settings["face_cells"]) >= 25 and job.status.warnings == []


def test_a_face_region_that_shows_little_of_a_face_is_told(empty_file, tmp_path, model):
    """The graded disc on the first frame (the reference frame of the mesh), then a disc of one
    colour: the tiny model's face there covers a few canonical cells (its edge blends)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    write_png(folder / "plain_0001.png", textured_disc(1))
    for i in range(2, 5):
        rgb = np.full((H, W, 3), 0.05, np.float32)
        rgb[(xx - 40 - 2 * i) ** 2 + (yy - 36) ** 2 < 22 ** 2] = 0.7
        write_png(folder / f"plain_{i:04d}.png", rgb)
    job = ReconstructJob(open_footage(folder), settings(face_region=(10, 5, 90, 70)), model)
    cap = job.run()
    assert cap.settings["face_cells"][0] >= 25 and max(cap.settings["face_cells"][1:]) < 10
    (warning,) = job.status.warnings
    assert warning.startswith("On 3 of 4 frames the network sees little of a face")


def test_the_progress_bar_spans_detection_frames_and_the_expression_fit():
    from face_anything_addon.blender.job import JobStatus

    assert JobStatus("detect", 10, 10).factor == pytest.approx(0.05)
    assert JobStatus("predict", 0, 10).factor == pytest.approx(0.05)
    assert JobStatus("predict", 10, 10).factor == pytest.approx(0.95)
    assert JobStatus("fit", 32, 64).factor == pytest.approx(0.975)
    assert JobStatus("done").factor == 1.0 and JobStatus("starting").factor == 0.0
    status = JobStatus("fit", 64, 128, fps=100.0, eta_s=0.64)
    # frame fits: the actor's face on a sample of frames, then the expressions of every frame
    assert status.text() == "Fitting the face and expressions 64 / 128, 100.0 fps, 1 s left"


def test_the_job_reads_frames_as_small_as_the_model_needs(empty_file, tmp_path, model):
    """Footage 4x larger than the model needs: the pipeline asks the reader (on Blender's main
    thread, through the feed) for frames in blocks, and the capture is what full-size frames
    give, in footage pixels."""
    for i in range(1, 7):  # the usual disc shot at 4x: 384 x 288
        write_png(tmp_path / f"big_{i:04d}.png", np.kron(textured_disc(i), np.ones((4, 4, 1))))
    caps = {}
    for mode in ("reduced", "full size"):
        footage = open_footage(tmp_path)
        asked, reduce = [], footage.reduced
        footage.reduced = lambda n: (asked.append(n), reduce(n if mode == "reduced" else 1))[1]
        caps[mode] = ReconstructJob(footage, settings(face_region="full"), model).run()
        # the reference frame is read as it is; the prediction pass in blocks of 3 (384 x 288
        # -> 84 x 56: 4.57 times smaller, of which an integer 3 leaves the filter at least 1.5)
        assert asked == [1, 3]
    small, full = caps["reduced"], caps["full size"]
    assert list(small.frame_numbers) == [1, 2, 3, 4, 5, 6]
    assert small.footage_size == full.footage_size == (4 * W, 4 * H)
    np.testing.assert_allclose(small.camera, full.camera, rtol=1e-4)
    both = small.visibility & full.visibility
    assert both.sum() >= 0.9 * full.visibility.sum() > 0
    assert np.abs(small.positions[both] - full.positions[both]).max() < 0.02 * \
        np.abs(full.positions[both][:, 2]).mean()


def test_cancel_leaves_nothing(empty_file, sequence, model):
    job = ReconstructJob(open_footage(sequence), settings(), model)
    job.start()
    job.cancel()
    while not job.tick():
        pass
    assert job.status.phase == "cancelled" and job.capture is None


def test_reader_error_is_reported(empty_file, tmp_path, sequence, model):
    for f in sequence.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "shot_0004.png").write_bytes(b"garbage")
    job = ReconstructJob(open_footage(tmp_path), settings(face_region="full"), model)
    job.start()
    while not job.tick():
        pass
    assert job.status.phase == "failed" and "shot_0004.png" in job.status.message


def test_operator_builds_replaces_and_refuses_bad_input(addon_from_source, empty_file, sequence,
                                                         model, tmp_path):
    prefs = bpy.context.preferences.addons[addon_from_source.__name__].preferences
    prefs.model_path = str(model)
    prefs.execution_provider = "CPU"
    prefs.cache_dir = str(tmp_path / "cache")
    s = bpy.context.scene.face_anything
    s.footage_path = str(sequence)
    s.resolution = 84
    s.grid_vertices = 300
    user = bpy.data.objects.new("user's own", None)
    bpy.context.scene.collection.objects.link(user)

    assert bpy.ops.faceanything.reconstruct() == {"FINISHED"}
    (col,) = [c for c in bpy.data.collections if c.name.startswith("Face Anything")]
    meshes = [o for o in col.all_objects if o.type == "MESH"]
    assert len(meshes) == 1 and len(meshes[0].data.shape_keys.key_blocks) == 7  # basis + 6
    counts = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions))
    assert list((tmp_path / "cache").glob("*.capture.npz"))

    s.lens_source, s.lens, s.sensor_width = "KNOWN", 85.0, 24.0
    assert bpy.ops.faceanything.reconstruct() == {"FINISHED"}  # again: replaces
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.actions)) == counts
    assert bpy.context.scene.camera.data.lens == pytest.approx(85.0)  # the lens it was shot with
    assert bpy.context.scene.camera.data.sensor_width == pytest.approx(24.0)
    assert "user's own" in bpy.data.objects

    before = (len(bpy.data.objects), len(bpy.data.collections))
    s.footage_path = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no images in"):
        bpy.ops.faceanything.reconstruct()
    s.footage_path = str(sequence)
    s.lens_source = "CLIP"  # a path is no Movie Clip: said before anything is read
    with pytest.raises(RuntimeError, match="Clip's Camera needs footage from the Movie Clip"):
        bpy.ops.faceanything.reconstruct()
    s.lens_source = "ESTIMATE"
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    prefs.model_path = str(bad)
    with pytest.raises(RuntimeError, match="not an ONNX model file"):
        bpy.ops.faceanything.reconstruct()
    prefs.model_path = str(make_model(tmp_path / "v7.onnx", metadata=contract_metadata(
        contract="7")))
    with pytest.raises(RuntimeError, match="contract version 7 is unknown"):
        bpy.ops.faceanything.reconstruct()
    assert (len(bpy.data.objects), len(bpy.data.collections)) == before


def test_the_panel_s_known_lens_distortion_is_undone_on_footage_files(
        addon_from_source, empty_file, sequence, model, tmp_path):
    """Known lens with Distortion set (the panel's way to what --distortion does): the capture
    undoes it and records it, and the camera shows the files through a Movie Clip carrying that
    lens, undistorted; with Movie Clip footage it is refused before anything is read."""
    import sys
    rc = sys.modules[f"{addon_from_source.__name__}.blender.reconstruct"]

    prefs = bpy.context.preferences.addons[addon_from_source.__name__].preferences
    prefs.model_path, prefs.execution_provider = str(model), "CPU"
    prefs.cache_dir = str(tmp_path / "cache")
    s = bpy.context.scene.face_anything
    s.footage_path, s.resolution, s.grid_vertices = str(sequence), 84, 300
    s.lens_source, s.lens, s.sensor_width = "KNOWN", 35.0, 24.0
    s.use_principal, s.principal = True, (30.0, 20.0)
    s.lens_distortion = "POLYNOMIAL"
    s.distortion_coefficients = (-0.2, 0.05, 0.0, 0.7, 0.0, 0.0)  # the 4th is not POLYNOMIAL's
    clips = set(bpy.data.movieclips)
    assert bpy.ops.faceanything.reconstruct() == {"FINISHED"}
    (path,) = (tmp_path / "cache").glob("*.capture.npz")
    capture = Capture.load(path)
    w, h = capture.footage_size
    record = capture.settings["lens_distortion"]
    assert record["model"] == "POLYNOMIAL" and record["coefficients"] == [-0.2, 0.05, 0.0]
    assert record["focal_px"] == pytest.approx(35 / 24 * max(w, h))
    assert record["principal"] == [30.0, h - 20.0]
    np.testing.assert_allclose(capture.camera[:2, 2], [30, 20])
    bg = bpy.context.scene.camera.data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip_user.use_render_undistorted
    assert bg.clip not in clips and bg.clip.name == f"{capture.footage_name} lens"
    camera = bg.clip.tracking.camera
    assert (camera.distortion_model, camera.k1, camera.k2, camera.k3) == (
        "POLYNOMIAL", pytest.approx(-0.2), pytest.approx(0.05), 0.0)

    clip = bpy.data.movieclips.load(str(sequence / "shot_0001.png"))
    before = (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.movieclips))
    with pytest.raises(rc.FootageError, match="Known lens's distortion is for footage files"):
        rc.start_job(bpy.context, clip=clip)
    assert (len(bpy.data.objects), len(bpy.data.collections), len(bpy.data.movieclips)) == before
    s.distortion_coefficients = (0.0,) * 6  # no distortion to undo: a clip is fine
    job, _ = rc.start_job(bpy.context, clip=clip)
    assert job.settings.lens_distortion is None


def test_no_face_is_an_error_and_changes_nothing(addon_from_source, empty_file, tmp_path, model):
    for i in range(1, 4):
        write_png(tmp_path / f"dark_{i}.png", np.full((H, W, 3), 0.05, np.float32))
    prefs = bpy.context.preferences.addons[addon_from_source.__name__].preferences
    prefs.model_path = str(model)
    prefs.execution_provider = "CPU"
    bpy.context.scene.face_anything.footage_path = str(tmp_path)
    before = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="no face found"):
        bpy.ops.faceanything.reconstruct()
    assert len(bpy.data.objects) == before


def test_command_line(sequence, model, tmp_path, capsys):
    from face_anything_addon import cli

    out = tmp_path / "out"
    code = cli.main([str(sequence), "-o", str(out), "--model", str(model), "--resolution", "84",
                     "--provider", "CPU", "--markers", "4", "--name", "shot", "--lens", "35",
                     "--sensor", "24", "--principal", "30", "20"])
    assert code == 0, capsys.readouterr().err
    capture = Capture.load(out / "shot.capture.npz")  # the lens given is the shot's camera
    w, h = capture.footage_size
    assert capture.camera[0, 0] == pytest.approx(35 / 24 * max(w, h))
    np.testing.assert_allclose(capture.camera[:2, 2], [30, 20])  # on its principal point
    assert bpy.context.scene.camera.data.lens == pytest.approx(35.0)
    # the optical axis left of and above the centre: the view window shifted right and down
    assert bpy.context.scene.camera.data.shift_x > 0 > bpy.context.scene.camera.data.shift_y
    for name in ("shot.blend", "shot.abc", "shot_markers.csv", "shot_markers.json",
                 "shot.capture.npz", "shot_preview.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    err = capsys.readouterr().err
    assert "6 frames" in err and "] 6 frames solved" in err and err.count("\n") < 40
    assert cli.main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert cli.main([str(sequence), "-o", str(out), "--lens", "-35"]) == 2
    assert "--lens must be 0 or more" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--principal", "30", "20"]) == 2
    assert "give --lens too" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--expression-prior", "0"]) == 2
    assert "--expression-prior must be above 0" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--raw-mesh", "--expression-prior", "3"]) == 2
    assert "--raw-mesh turns it off" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--raw-mesh", "--neutral-face",
                     "--depth-weight", "0.5"]) == 2
    assert "--neutral-face, --depth-weight: for the expression fit" in capsys.readouterr().err
    for bad in ("0", "1.5"):
        assert cli.main([str(sequence), "-o", str(out), "--depth-weight", bad]) == 2
        assert "--depth-weight must be above 0 and at most 1" in capsys.readouterr().err
    default = SolveSettings()
    for flags, fit, prior, rounds, depth in (
            ([], True, 4.0, default.identity_rounds, default.depth_weight),
            (["--expression-prior", "2.5"], True, 2.5, default.identity_rounds,
             default.depth_weight),
            (["--neutral-face", "--depth-weight", "1"], True, 4.0, 0, 1.0),
            (["--raw-mesh"], False, 4.0, default.identity_rounds, default.depth_weight)):
        solve = cli.settings_from(cli.parse([str(sequence), "-o", str(out), *flags])).solve
        assert (solve.expressions, solve.expression_prior_mm, solve.identity_rounds,
                solve.depth_weight) == (fit, prior, rounds, depth)
    assert default.identity_rounds > 0 and 0 < default.depth_weight < 1
    # --actor-face: the face of an earlier capture; this one (a mesh from a reference frame,
    # no expression fit) holds none
    assert cli.main([str(sequence), "-o", str(out), "--actor-face",
                     str(out / "shot.capture.npz")]) == 2
    assert "--actor-face: shot.capture.npz holds no actor's face" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--actor-face", str(tmp_path / "no")]) == 2
    assert "capture file not found" in capsys.readouterr().err
    actor = Capture.load(out / "shot.capture.npz")
    actor.identity_weights = np.linspace(-1, 1, 24).astype(np.float32)
    actor_file = actor.save(tmp_path / "actor.capture.npz")
    solve = cli.settings_from(cli.parse([str(sequence), "-o", str(out), "--actor-face",
                                         str(actor_file)])).solve
    assert solve.actor_face.source == str(actor_file) and len(solve.actor_face.weights) == 24
    assert solve.actor_face.template_name == actor.template_name
    for flags in (["--neutral-face"], ["--raw-mesh"]):
        assert cli.main([str(sequence), "-o", str(out), "--actor-face", str(actor_file),
                         *flags]) == 2
        assert "--actor-face" in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--model", str(tmp_path / "x.onnx")]) == 2


def test_command_line_follows_face_boxes_from_a_csv_file(sequence, model, tmp_path, capsys):
    """--face-region FILE.csv: a box per frame (from another tracker); frames without one take
    it interpolated. The tiny model predicts its input's centre as the principal point, so each
    frame's intrinsics show the centre of its crop."""
    from face_anything_addon import cli

    def centre(frame):  # footage_helpers.textured_disc
        return 40.0 + 2 * frame, 36.0

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("frame,x0,y0,x1,y1\n" + "".join(
        f"{f},{centre(f)[0] - 24},{12},{centre(f)[0] + 24},{60}\n" for f in (1, 2, 3, 5, 6)))
    out = tmp_path / "out"
    code = cli.main([str(sequence), "-o", str(out), "--model", str(model), "--resolution", "84",
                     "--provider", "CPU", "--name", "shot", "--face-region", str(boxes)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 of 6 frames have no box" in err
    capture = Capture.load(out / "shot.capture.npz")
    np.testing.assert_allclose(capture.intrinsics[:, 0, 2],
                               [centre(f)[0] for f in capture.frame_numbers], atol=0.5)
    np.testing.assert_allclose(capture.intrinsics[:, 1, 2], 36.0, atol=0.5)
    # the capture writes the boxes the network saw in the same form: run again from them
    from face_anything_addon.core.face_boxes import read_face_boxes
    written = read_face_boxes(out / "shot_face_boxes.csv")
    assert sorted(written) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([written[n] for n in sorted(written)],
                               capture.settings["face_boxes"], atol=1e-3)
    np.testing.assert_allclose(written[4], ((centre(3)[0] + centre(5)[0]) / 2 - 24, 12,
                                            (centre(3)[0] + centre(5)[0]) / 2 + 24, 60),
                               atol=1e-3)  # frame 4: interpolated
    again = tmp_path / "again"
    assert cli.main([str(sequence), "-o", str(again), "--model", str(model), "--resolution",
                     "84", "--provider", "CPU", "--name", "shot", "--face-region",
                     str(out / "shot_face_boxes.csv")]) == 0
    assert "have no box" not in capsys.readouterr().err
    np.testing.assert_allclose(Capture.load(again / "shot.capture.npz").settings["face_boxes"],
                               capture.settings["face_boxes"], atol=1e-3)
    for text, said in (("1,10,10,5,20\n", "line 1 ('1,10,10,5,20')"),
                       ("frame,x0,y0,x1,y1\n1,0,0,9,9\n1,0,0,9,9\n", "line 3"),
                       ("", "no boxes in it"), ("40,0,0,9,9\n", "no box on the frames being "
                                                              "captured (1-6)")):
        boxes.write_text(text)
        assert cli.main([str(sequence), "-o", str(out), "--face-region", str(boxes)]) == 2
        assert said in capsys.readouterr().err
    assert cli.main([str(sequence), "-o", str(out), "--face-region",
                     str(tmp_path / "none.csv")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_command_line_undoes_a_lens_s_distortion(sequence, model, tmp_path, capsys):
    from face_anything_addon import cli
    from face_anything_addon.core.lens_distortion import footage_xy

    out = tmp_path / "out"
    code = cli.main([str(sequence), "-o", str(out), "--model", str(model), "--resolution", "84",
                     "--provider", "CPU", "--name", "shot", "--lens", "35", "--sensor", "24",
                     "--principal", "30", "20", "--distortion", "polynomial:-0.2,0.05,0",
                     "--markers", "4"])
    assert code == 0, capsys.readouterr().err
    capture = Capture.load(out / "shot.capture.npz")
    w, h = capture.footage_size
    record = capture.settings["lens_distortion"]
    assert record["model"] == "POLYNOMIAL" and record["coefficients"] == [-0.2, 0.05, 0.0]
    assert record["focal_px"] == pytest.approx(35 / 24 * max(w, h))
    assert record["principal"] == [30.0, h - 20.0]  # Blender's: y up
    # the .blend's camera shows the footage undistorted, through a clip with that lens
    bg = bpy.context.scene.camera.data.background_images[0]
    assert bg.source == "MOVIE_CLIP" and bg.clip_user.use_render_undistorted
    camera = bg.clip.tracking.camera
    assert (camera.distortion_model, camera.k1, camera.k2) == ("POLYNOMIAL",
                                                               pytest.approx(-0.2),
                                                               pytest.approx(0.05))
    # the marker files are on the footage as shot
    import csv
    with open(out / "shot_markers.csv") as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))
                if r["x"]]
    row = rows[0]
    i = list(capture.frame_numbers).index(int(row["frame"]))
    m = list(capture.marker_names).index(row["name"])
    np.testing.assert_allclose([float(row["x"]), float(row["y"])],
                               footage_xy(capture, capture.marker_xy[i, m]), atol=1e-3)
    assert np.abs(footage_xy(capture, capture.marker_xy[i, m]) - capture.marker_xy[i, m]).max() \
        > 1e-3
    # bad specs are refused before anything is read
    for flags, said in (([], "give --lens"), (["--lens", "35"], "must be one of"),
                        (["--lens", "35"], "POLYNOMIAL takes 3 numbers")):
        spec = "fisheye:0.1" if said == "must be one of" else "POLYNOMIAL:-0.2,0.05"
        assert cli.main([str(sequence), "-o", str(out), *flags, "--distortion", spec]) == 2
        assert said in capsys.readouterr().err
