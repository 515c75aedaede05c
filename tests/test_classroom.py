"""classroom.py's pieces, each on something small: the marker parser, the blanking, the student copy, the
grader's outcomes and its bad input. The whole `classroom.py check` is too slow for the suite; CI runs it.
"""
import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

import classroom
import cli

SOURCE = textwrap.dedent('''\
    def double(x):
        """2x."""
        # --- student part: doubling (lesson: "1. Doubling") ---
        y = x + x
        return y
        # --- end of student part ---


    class Box:
        def area(self, w, h):
            # --- student part: the area of a box (lesson: "2. Boxes") ---
            if w < 0:
                raise ValueError("negative")
            return w * h
            # --- end of student part ---
    ''')


def test_find_parts_reads_the_markers():
    parts = classroom.find_parts(SOURCE, "01_toy/toy.py")
    assert [(p.task, p.section, p.begin, p.end, p.indent) for p in parts] == [
        ("doubling", "1. Doubling", 2, 5, "    "), ("the area of a box", "2. Boxes", 10, 14, "        ")]
    assert parts[0].chapter == "01_toy" and parts[0].name == "01_toy/toy.py:3"


def test_blanking_compiles_and_raises_the_message_with_the_lesson_section():
    parts = classroom.find_parts(SOURCE, "01_toy/toy.py")
    blanked = classroom.blank(SOURCE, parts)
    assert blanked.count("# --- student part:") == 2 and blanked.count("# --- end of student part ---") == 2
    assert "x + x" not in blanked and "w * h" not in blanked
    namespace = {}
    exec(compile(blanked, "toy.py", "exec"), namespace)
    with pytest.raises(NotImplementedError) as raised:
        namespace["double"](3)
    assert str(raised.value) == ('Not written yet: doubling. The lesson explains it: 01_toy/README.md, '
                                 'section "1. Doubling".')
    with pytest.raises(NotImplementedError, match='area of a box.*section "2. Boxes"'):
        namespace["Box"]().area(2, 3)
    # blanking one part leaves the other solved
    only_first = {}
    exec(classroom.blank(SOURCE, parts[:1]), only_first)
    assert only_first["Box"]().area(2, 3) == 6


@pytest.mark.parametrize("text, message", [
    ('    # --- student part: x (lesson: "1") ---\n    return 1\n', "never ends"),
    ("    return 1\n    # --- end of student part ---\n", "without a `student part:`"),
    ('    # --- student part: x (lesson: "1") ---\n    # --- student part: y (lesson: "1") ---\n', "inside"),
    ('    # --- student part: x (lesson: "1") ---\n    return 1\n# --- end of student part ---\n', "not indented like"),
    ('    # --- student part: x (lesson: "1") ---\n\n    # --- end of student part ---\n', "empty"),
    ('    # --- student part: x (lesson: "1") ---\nreturn 1\n    # --- end of student part ---\n', "indented less"),
    ("    # --- student part: x, no lesson ---\n", "wrong form"),
])
def test_malformed_markers_are_refused_with_the_line(text, message):
    with pytest.raises(ValueError, match=message) as raised:
        classroom.find_parts(text, "01_toy/toy.py")
    assert "01_toy/toy.py:" in str(raised.value)


def test_the_repository_markers_are_sound_without_running_tests():
    """What check verifies before it runs anything: parts in every chapter, each lesson section a heading of
    the chapter's README, every blanked file compiles."""
    by_file = classroom.all_parts(classroom.REPO)
    parts = [p for file_parts in by_file.values() for p in file_parts]
    assert {p.chapter for p in parts} == set(classroom.chapter_folders(classroom.REPO))
    assert classroom.check_headings(classroom.REPO, parts) == []
    assert classroom.check_blanks_compile(classroom.REPO, by_file) == []


def test_pick_chapters_accepts_numbers_and_names_and_refuses_unknown_ones():
    assert classroom.pick_chapters(["2", "03", "05_rlhf", "02"]) == ["02_transformer", "03_pretrain", "05_rlhf"]
    assert classroom.pick_chapters(None) == classroom.chapter_folders(classroom.REPO)
    with pytest.raises(ValueError, match="unknown chapter '09': choose from 01 02"):
        classroom.pick_chapters(["09"])


def toy_repo(root):
    """A two-chapter repository: 01_toy with a marked body and its test file, runs/ and caches to skip."""
    (root / "01_toy").mkdir(parents=True)
    (root / "01_toy" / "toy.py").write_text(SOURCE)
    (root / "01_toy" / "README.md").write_text("# Toy\n## 1. Doubling\n## 2. Boxes\n")
    (root / "02_other").mkdir()
    (root / "02_other" / "other.py").write_text("def f():\n    return 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_01_toy.py").write_text(textwrap.dedent('''\
        import sys, pathlib
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "01_toy"))
        import pytest
        import toy

        def test_double():
            assert toy.double(2) == 4

        @pytest.mark.parametrize("w", [1, 2])
        def test_area(w):
            assert toy.Box().area(w, 3) == 3 * w

        def test_wrong():
            assert toy.double(1) == 3

        def test_skipped():
            pytest.skip("no reference here")
        '''))
    (root / "runs" / "01_toy").mkdir(parents=True)
    (root / "runs" / "01_toy" / "ckpt.pt").write_text("a run")
    (root / "01_toy" / "__pycache__").mkdir()
    (root / "01_toy" / "__pycache__" / "toy.cpython.pyc").write_text("cache")
    return root


def test_student_copy_blanks_the_chosen_chapters_and_skips_runs(tmp_path):
    root = toy_repo(tmp_path / "repo")
    out = tmp_path / "handout"
    blanked = classroom.make_student_copy(out, ["01_toy"], root=root)
    assert [p.task for p in blanked] == ["doubling", "the area of a box"]
    assert "raise NotImplementedError" in (out / "01_toy" / "toy.py").read_text()
    assert (out / "02_other" / "other.py").read_text() == "def f():\n    return 1\n"
    assert (out / "tests" / "test_01_toy.py").exists() and (out / "01_toy" / "README.md").exists()
    assert not (out / "runs").exists() and not (out / "01_toy" / "__pycache__").exists()
    assert json.loads((out / classroom.STUDENT_FILE).read_text()) == {"chapters": ["01_toy"]}
    # a handout written inside the repository is not copied into the next one, nor into itself
    classroom.make_student_copy(root / "handout", ["01_toy"], root=root)
    classroom.make_student_copy(root / "handout2", [], root=root)
    assert (root / "handout2" / "01_toy" / "toy.py").read_text() == SOURCE
    assert not (root / "handout2" / "handout").exists() and not (root / "handout" / "handout").exists()


def test_student_refuses_a_non_empty_out_and_the_repository_itself(tmp_path):
    root = toy_repo(tmp_path / "repo")
    out = tmp_path / "handout"
    classroom.make_student_copy(out, [], root=root)
    with pytest.raises(FileExistsError, match="--overwrite"):
        classroom.make_student_copy(out, ["01_toy"], root=root)
    classroom.make_student_copy(out, ["01_toy"], overwrite=True, root=root)  # an earlier student copy: replaced
    assert "raise NotImplementedError" in (out / "01_toy" / "toy.py").read_text()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a student copy"):
        classroom.make_student_copy(precious, ["01_toy"], overwrite=True, root=root)
    assert (precious / "thesis.tex").exists()
    with pytest.raises(ValueError, match="holds this repository"):
        classroom.make_student_copy(tmp_path, ["01_toy"], overwrite=True, root=root)


def test_the_script_says_one_line_for_bad_input(tmp_path, capsys):
    (tmp_path / "x").write_text("not empty")
    with pytest.raises(SystemExit) as exit_info:
        cli.run(classroom.main, ["student", str(tmp_path), "--chapters", "02"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} is not empty: pass --overwrite")
    with pytest.raises(SystemExit):
        cli.run(classroom.main, ["student", str(tmp_path / "new"), "--chapters", "42"])
    assert "unknown chapter '42'" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    with pytest.raises(SystemExit):
        cli.run(classroom.main, ["grade", str(tmp_path)])
    assert "has no chapter folders" in capsys.readouterr().err


@pytest.mark.parametrize("child, outcome", [
    (None, "passed"),
    ('<skipped message="no reference"/>', "skipped"),
    ('<failure message="AssertionError: 1 != 2">assert 1 == 2</failure>', "failed"),
    ('<failure message="NotImplementedError: Not written yet: GAE.">Traceback</failure>', "not attempted"),
    ('<error message="failed on setup">NotImplementedError: Not written yet: the loss.</error>', "not attempted"),
    ('<error message="failed on setup">OSError: disk full</error>', "error"),
])
def test_junit_outcomes_map_a_blank_to_not_attempted(child, outcome):
    case = ET.fromstring(f'<testcase classname="tests.test_05_rlhf" name="test_gae[a]">{child or ""}</testcase>')
    assert classroom.outcome_of(case) == outcome
    assert classroom.test_id(case) == "tests/test_05_rlhf.py::test_gae[a]"


def test_grade_scores_a_student_copy_and_never_crashes(tmp_path):
    root = toy_repo(tmp_path / "repo")
    out = tmp_path / "handout"
    classroom.make_student_copy(out, ["01_toy"], root=root)
    report = classroom.grade(out, ["01_toy"], teacher=root)
    (chapter,) = report["chapters"]
    outcomes = {t["test"]: (t["outcome"], t["points"], t["max"]) for t in chapter["tests"]}
    assert outcomes == {"test_double": ("not attempted", 0, 1), "test_area[1]": ("not attempted", 0, 1),
                        "test_area[2]": ("not attempted", 0, 1), "test_wrong": ("not attempted", 0, 1),
                        "test_skipped": ("skipped", 0, 0)}
    assert (report["points"], report["max"], report["complete"]) == (0, 4, True)
    solved = classroom.grade(root, ["01_toy"], teacher=root)
    assert (solved["points"], solved["max"]) == (3, 4)  # test_wrong fails on the solution too: "failed"
    assert "failed" in classroom.report_text(solved) and "| **total** | **3 / 4** |" in classroom.report_markdown(solved)
    # a test file that does not even import (a student's syntax error) is a row, not a crash
    (out / "01_toy" / "toy.py").write_text("def broken(:\n")
    broken = classroom.grade(out, ["01_toy"], teacher=root)
    assert broken["chapters"][0]["status"] == "could not collect" and not broken["complete"]
    assert "incomplete" in classroom.report_text(broken)


FORCE_PASS_CONFTEST = textwrap.dedent('''\
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        outcome = yield
        outcome.get_result().outcome = "passed"
    ''')


def always_true(out):
    tests = out / "tests" / "test_01_toy.py"
    tests.write_text(tests.read_text().replace("assert toy.double(2) == 4", "assert True"))


def delete_a_test(out):
    tests = out / "tests" / "test_01_toy.py"
    tests.write_text(tests.read_text().replace("def test_wrong():\n    assert toy.double(1) == 3\n", ""))


def conftest_that_passes_everything(out):
    (out / "conftest.py").write_text(FORCE_PASS_CONFTEST)
    (out / "01_toy" / "conftest.py").write_text(FORCE_PASS_CONFTEST)


def ini_that_deselects(out):
    (out / "pytest.ini").write_text('[pytest]\naddopts = -k "not double and not area and not wrong"\n')


@pytest.mark.parametrize("edit", [always_true, delete_a_test, conftest_that_passes_everything, ini_that_deselects])
def test_a_student_cannot_change_the_grade_by_editing_the_tests(tmp_path, edit):
    """grade runs the teacher's tests/, conftest.py and pytest settings on the student's code: a test made to
    `assert True`, a deleted test, a hook that passes everything or an ini that deselects the tests changes
    nothing; the student's folder is not modified; the student's code is what is graded."""
    root = toy_repo(tmp_path / "repo")
    out = tmp_path / "handout"
    classroom.make_student_copy(out, ["01_toy"], root=root)
    def outcomes(report):
        return {t["test"]: (t["outcome"], t["points"], t["max"]) for t in report["chapters"][0]["tests"]}
    before = classroom.grade(out, ["01_toy"], teacher=root)
    assert (before["points"], before["max"]) == (0, 4)
    edit(out)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    after = classroom.grade(out, ["01_toy"], teacher=root)
    assert outcomes(after) == outcomes(before) and (after["points"], after["max"]) == (0, 4)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # only read
    # the code graded is the student's: written correctly, it scores (test_wrong fails on the solution too)
    (out / "01_toy" / "toy.py").write_text(SOURCE)
    solved = classroom.grade(out, ["01_toy"], teacher=root)
    assert (solved["points"], solved["max"]) == (3, 4)


def test_check_finds_an_uncaught_blank_a_failing_solution_and_a_chapter_without_parts(tmp_path):
    """check on the toy repository: test_wrong fails on the solution, no test calls Box.area (so blanking
    it alone is caught by nothing), and 02_other has no marked body. Each is a problem, named."""
    root = toy_repo(tmp_path / "repo")
    tests = root / "tests" / "test_01_toy.py"
    tests.write_text(tests.read_text().replace("assert toy.Box().area(w, 3) == 3 * w", "assert w in (1, 2)"))
    lines = []
    problems = classroom.check(root, jobs=2, log=lines.append)
    assert any(" 01_toy/toy.py:3 " in line and "caught by tests/test_01_toy.py::test_double" in line
               for line in lines)
    assert problems == ["chapter 02_other has no marked body", "chapter 02_other has no test file tests/test_02_*.py",
                        "the solution does not score full marks in 01_toy (ran): ['test_wrong']",
                        "blanking 01_toy/toy.py:11 (the area of a box) fails no test of 01_toy: add a test"]
    # the repository itself is untouched by the scratch copies
    assert "w * h" in (root / "01_toy" / "toy.py").read_text()


def test_check_of_one_chapter_leaves_the_others_alone(tmp_path):
    """check(only=[...]) (`classroom.py check --chapters 08`) proves only the chapters named."""
    root = toy_repo(tmp_path / "repo")
    lines = []
    problems = classroom.check(root, jobs=1, log=lines.append, only=["02_other"])
    assert problems == ["chapter 02_other has no marked body", "chapter 02_other has no test file tests/test_02_*.py"]
    assert not any("01_toy" in line for line in lines)
