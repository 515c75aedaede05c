"""The classroom version of bytes2chat: a student copy with the paper formulas blanked, and its autograder.

    python classroom.py student handout/ --chapters 02 03   # a copy where 02's and 03's marked bodies are blanks
    python classroom.py grade handout/                      # score handout's code with this repository's tests
    python classroom.py grade --chapters 05                 # grade this repository (the solution: full marks)
    python classroom.py check                               # prove every blank is caught by a test (CI runs it)
    python classroom.py list                                # every marked body, with its lesson section

There is one source. In the chapters' modules, the body a student writes sits between two comments:

    # --- student part: Bradley-Terry's pairwise loss (lesson: "3. The reward model (`reward_model.py`)") ---
    return -F.logsigmoid(chosen_scores - rejected_scores).mean()
    # --- end of student part ---

`student` copies the repository (never runs/ or .git) and, in the chosen chapters, replaces each such body
by `raise NotImplementedError("Not written yet: <what>. The lesson explains it: <chapter>/README.md,
section <section>.")`; earlier and later chapters stay solved, so chapter 05 can be assigned alone.

Points: 1 point per test case (each parametrized case counts on its own) in the chapter's test file
tests/test_0N_*.py; a skipped test (an optional reference package is missing) counts 0 of 0. A test that
fails on a blank is "not attempted", one that fails otherwise "failed"; neither crashes the grader.
grade takes only the chapter folders from the student (their code) and runs them, in a temporary copy, with
the tests/, conftest.py and pytest settings of this repository: editing or deleting a test changes nothing.
grade writes grade.json and grade.md into --out-dir (default PATH/runs/classroom/), replacing the last
report there (a report is recomputed from the code in seconds; it is not a run worth keeping).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.append(str(REPO / "01_tokenizer"))
import cli  # noqa: E402  (one clear line for bad input)

BEGIN = re.compile(r'^(?P<indent> *)# --- student part: (?P<task>.+) \(lesson: "(?P<section>.+)"\) ---$')
END = re.compile(r"^(?P<indent> *)# --- end of student part ---$")
NOT_WRITTEN = "Not written yet:"  # how every blank's message starts: how grade tells "not attempted"
SKIP_NAMES = {".git", "runs", "data_cache", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".venv"}
STUDENT_FILE = ".classroom.json"  # written into a student copy: which chapters are assignments
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
# pytest reads these (settings, hooks, plugins): in a graded tree they come from the teacher only
PYTEST_FILES = {"conftest.py", "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"}


# ----------------------------------------------------------------------------------------------------
# Marked bodies: find them, blank them


@dataclass(frozen=True)
class Part:
    """One marked body: lines begin+1 .. end-1 (0-based) of `path` (relative to the repository)."""
    path: str
    task: str
    section: str
    begin: int
    end: int
    indent: str

    @property
    def chapter(self):
        return self.path.split("/")[0]

    @property
    def name(self):
        return f"{self.path}:{self.begin + 1}"

    def message(self):
        return (f"{NOT_WRITTEN} {self.task}. The lesson explains it: {self.chapter}/README.md, "
                f'section "{self.section}".')


def find_parts(text, path="<string>"):
    """The marked bodies of one file's text, in order. Raises ValueError on a malformed pair of markers.

    >>> find_parts('def f(x):\\n    # --- student part: double it (lesson: "1. Doubling") ---\\n'
    ...            '    return 2 * x\\n    # --- end of student part ---\\n')[0].task
    'double it'
    """
    parts, open_at = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        begin, end = BEGIN.match(line), END.match(line)
        if "# --- student part" in line and not begin or "# --- end of student part" in line and not end:
            raise ValueError(f"{path}:{i + 1}: a student marker in the wrong form; write "
                             f'`# --- student part: <what to write> (lesson: "<section>") ---` and '
                             f"`# --- end of student part ---`, each alone on its line")
        if begin:
            if open_at is not None:
                raise ValueError(f"{path}:{i + 1}: a student part begins inside the one opened at line "
                                 f"{open_at.start() + 1}: close that one first")
            open_at, open_line = begin, i
        elif end:
            if open_at is None:
                raise ValueError(f"{path}:{i + 1}: `end of student part` without a `student part:` before it")
            if end["indent"] != open_at["indent"]:
                raise ValueError(f"{path}:{i + 1}: the end marker is not indented like its begin marker "
                                 f"(line {open_line + 1})")
            body = [line for line in lines[open_line + 1:i] if line.strip()]
            if not body:
                raise ValueError(f"{path}:{open_line + 1}: an empty student part: mark the lines the student writes")
            if any(len(line) - len(line.lstrip()) < len(open_at["indent"]) for line in body):
                raise ValueError(f"{path}:{open_line + 1}: a line of the student part is indented less than "
                                 f"its markers: mark a whole block")
            parts.append(Part(path, open_at["task"], open_at["section"], open_line, i, open_at["indent"]))
            open_at = None
    if open_at is not None:
        raise ValueError(f"{path}:{open_line + 1}: a student part that never ends: add `# --- end of student part ---`")
    return parts


def blank(text, parts):
    """`text` with the body of each of `parts` (found in this text) replaced by one
    `raise NotImplementedError(<the part's message>)` at the markers' indentation; markers stay."""
    lines = text.splitlines(keepends=True)
    for part in sorted(parts, key=lambda p: p.begin, reverse=True):
        lines[part.begin + 1:part.end] = [f"{part.indent}raise NotImplementedError({part.message()!r})\n"]
    return "".join(lines)


def chapter_folders(root):
    return sorted(p.name for p in Path(root).glob("[0-9][0-9]_*") if p.is_dir())


def all_parts(root):
    """Every marked body under the chapter folders of `root`, by file: {relative path: [Part, ...]}."""
    found = {}
    for chapter in chapter_folders(root):
        for file in sorted((Path(root) / chapter).rglob("*.py")):
            if SKIP_NAMES & set(file.relative_to(root).parts):
                continue
            relative = file.relative_to(root).as_posix()
            parts = find_parts(file.read_text(encoding="utf-8"), relative)
            if parts:
                found[relative] = parts
    return found


def pick_chapters(names, root=REPO):
    """'02', '2' or '02_transformer' -> the chapter folder names of `root`. None means all of them."""
    folders = chapter_folders(root)
    if not names:
        return folders
    picked = []
    for name in names:
        match = [f for f in folders if f == name or f[:2] == name.zfill(2)]
        if not match:
            raise ValueError(f"unknown chapter {name!r}: choose from {' '.join(f[:2] for f in folders)}")
        if match[0] not in picked:
            picked.append(match[0])
    return picked


# ----------------------------------------------------------------------------------------------------
# The student copy


def source_files(root):
    """The files of the repository at `root`, relative: git's (tracked and untracked, not ignored) when it
    is a git checkout, else every file outside runs/, .git and the caches."""
    root = Path(root)
    if (root / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, check=False)
        if listed.returncode == 0:
            names = [n for n in listed.stdout.decode("utf-8").split("\0") if n]
            return sorted({n for n in names if (root / n).is_file() and not SKIP_NAMES & set(Path(n).parts)})
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        files += [(Path(dirpath) / f).relative_to(root).as_posix() for f in filenames if not f.endswith(".pyc")]
    return sorted(files)


def copy_repo(root, out, chapters=(), skip=None):
    """Copy the repository at `root` into the folder `out`, blanking the marked bodies of `chapters`.
    `skip`: a folder whose contents are not copied (the student copy itself, when it lies inside root).
    Returns the blanked parts."""
    root, out = Path(root), Path(out)
    parts = all_parts(root)
    blanked = []
    names = source_files(root)
    # other student copies inside the repository (a handout/ beside the chapters) are not the source
    handouts = [Path(n).parent for n in names if Path(n).name == STUDENT_FILE]
    for name in names:
        if skip is not None and (root / name).resolve().is_relative_to(skip):
            continue
        if any(Path(name).is_relative_to(handout) for handout in handouts):
            continue
        if (root / name).resolve().is_relative_to(out.resolve()):
            continue
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        file_parts = [p for p in parts.get(name, []) if p.chapter in chapters]
        if file_parts:
            target.write_text(blank((root / name).read_text(encoding="utf-8"), file_parts), encoding="utf-8")
            blanked += file_parts
        else:
            shutil.copy2(root / name, target)
    return blanked


def check_student_out(out, overwrite, root=REPO):
    """Refuse an OUT that would destroy something: a non-empty folder (unless --overwrite, and then only a
    folder an earlier `student` wrote), the repository itself or a folder that holds it."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file: give a folder for the student copy")
    if out == root or root.is_relative_to(out):
        raise ValueError(f"{out} holds this repository: give a new folder for the student copy")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty: pass --overwrite to replace an earlier student copy, "
                                  f"or give a new folder")
        if not (out / STUDENT_FILE).exists():
            raise FileExistsError(f"{out} is not empty and is not a student copy (no {STUDENT_FILE}): it will not "
                                  f"be deleted; give a new or empty folder")
    return out


def make_student_copy(out, chapters, overwrite=False, root=REPO):
    out = check_student_out(out, overwrite, root)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    blanked = copy_repo(root, out, chapters, skip=out)
    (out / STUDENT_FILE).write_text(json.dumps({"chapters": list(chapters)}, indent=1) + "\n", encoding="utf-8")
    return blanked


# ----------------------------------------------------------------------------------------------------
# Grading


def chapter_tests(root, chapter):
    """The chapter's test file, relative to root: tests/test_0N_*.py."""
    found = sorted(Path(root).glob(f"tests/test_{chapter[:2]}_*.py"))
    if not found:
        raise FileNotFoundError(f"no tests/test_{chapter[:2]}_*.py in {root}: is it a bytes2chat repository?")
    return found[0].relative_to(root).as_posix()


def outcome_of(case):
    """A junit <testcase> -> 'passed' | 'skipped' | 'not attempted' | 'failed' | 'error'."""
    for kind in ("failure", "error"):
        found = case.find(kind)
        if found is not None:
            blob = (found.get("message") or "") + (found.text or "")
            if NOT_WRITTEN in blob:
                return "not attempted"
            return "failed" if kind == "failure" else "error"
    return "skipped" if case.find("skipped") is not None else "passed"


def test_id(case):
    """A junit <testcase> -> pytest's node id, e.g. tests/test_02_transformer.py::test_softmax[x]."""
    module, name = case.get("classname", ""), case.get("name", "")
    if not module:
        return name  # a collection error: junit names the file, not a test
    dotted = module.split(".")  # tests.test_02_transformer[.TestClass]
    return "/".join(dotted[:2]) + ".py::" + "::".join(dotted[2:] + [name])


def run_pytest(root, targets, junit, timeout, stop_at_first=False, threads=None):
    """Run pytest on `targets` in `root`, writing junit XML. Returns (cases [(id, outcome, message)],
    status: 'ran' | 'timed out' | 'could not run', the output's tail)."""
    command = PYTEST + (["-x"] if stop_at_first else []) + [f"--junitxml={junit}", *targets]
    # no pytest plugins from site-packages (the tests use none; hypothesis alone costs 0.7 s a start)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [], "timed out", f"pytest ran longer than {timeout} s"
    tail = (done.stdout + done.stderr)[-3000:]
    if not Path(junit).exists():
        return [], "could not run", tail
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = outcome_of(case)
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        message = "" if problem is None else (problem.get("message") or "") + "\n" + (problem.text or "")
        cases.append((test_id(case), outcome, message))
    if any("::" not in test and outcome in ("error", "not attempted") for test, outcome, _ in cases):
        return cases, "could not collect", tail
    return cases, "ran", tail


def grade_chapter(root, chapter, timeout, threads=None):
    with tempfile.TemporaryDirectory() as scratch:
        cases, status, tail = run_pytest(root, [chapter_tests(root, chapter)], Path(scratch) / "junit.xml", timeout,
                                         threads=threads)
    tests = [{"test": test.split("::", 1)[-1], "outcome": outcome,
              "points": int(outcome == "passed"), "max": int(outcome != "skipped")} for test, outcome, _ in cases]
    result = {"chapter": chapter, "tests_file": chapter_tests(root, chapter), "status": status,
              "points": sum(t["points"] for t in tests), "max": sum(t["max"] for t in tests), "tests": tests}
    if status != "ran":
        result["output"] = tail
    return result


def is_chapter_file(name):
    """'05_rlhf/ppo.py' -> True: the file lies in a chapter folder, the part of a repository a student writes."""
    return re.fullmatch(r"[0-9][0-9]_[^/]*", name.split("/")[0]) is not None and "/" in name


def graded_copy(student, teacher, out):
    """Write into `out` the tree that `grade` tests: the student's chapter folders (their code) and
    everything else from the teacher's repository (tests/, conftest.py, the root's scripts and settings).
    pytest's configuration files and conftest.py files are never taken from the student, so a test a student
    edited, deleted or wrapped in a hook of their own does not count. The student's folder is only read."""
    student, teacher, out = Path(student).resolve(), Path(teacher).resolve(), Path(out)
    student_names = source_files(student)
    # other student copies inside either repository (a handout/ beside the chapters) are not theirs to give
    handouts = [Path(n).parent for n in student_names if Path(n).name == STUDENT_FILE and Path(n).parent != Path(".")]
    for name in student_names:
        if is_chapter_file(name) and Path(name).name not in PYTEST_FILES \
                and not any(Path(name).is_relative_to(h) for h in handouts):
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(student / name, target)
    teacher_names = source_files(teacher)
    handouts = [Path(n).parent for n in teacher_names if Path(n).name == STUDENT_FILE]
    for name in teacher_names:
        if is_chapter_file(name) and Path(name).name not in PYTEST_FILES:
            continue
        inside_student = student != teacher and (teacher / name).resolve().is_relative_to(student)
        if inside_student or any(Path(name).is_relative_to(h) for h in handouts):
            continue
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(teacher / name, target)


def grade(root, chapters, timeout=1800, jobs=1, teacher=REPO):
    """Run each chapter's tests on the code in `root` -> the report (a dict, as grade.json holds it).
    The tests and conftest.py are the `teacher`'s (this repository's), not root's: see graded_copy."""
    threads = 1 if jobs > 1 else None
    with tempfile.TemporaryDirectory(prefix="classroom-grade-") as scratch:
        os.chmod(scratch, 0o755)  # chapter 07's sandbox runs programs as a uid of their own: it must reach the copy
        tree = Path(scratch) / "graded"
        graded_copy(root, teacher, tree)
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(lambda c: grade_chapter(tree, c, timeout, threads), chapters))
    return {"path": str(root), "tests_from": str(Path(teacher).resolve()),
            "rule": "1 point per passing test case; skipped tests count 0 of 0",
            "chapters": results, "points": sum(r["points"] for r in results), "max": sum(r["max"] for r in results),
            "complete": all(r["status"] == "ran" for r in results)}


def counts(result):
    tally = {}
    for t in result["tests"]:
        tally[t["outcome"]] = tally.get(t["outcome"], 0) + 1
    return ", ".join(f"{n} {o}" for o, n in tally.items()) or "no tests"


def status_note(result):
    return "" if result["status"] == "ran" else f"  ({result['status']}: the tests did not all run)"


def report_text(report, per_test=True):
    """The score table as text: per test (optional), per chapter, total."""
    lines = []
    if per_test:
        for r in report["chapters"]:
            lines.append(f"{r['chapter']}  ({r['tests_file']})")
            for t in r["tests"]:
                lines.append(f"  {t['points']}/{t['max']}  {t['outcome']:<13}  {t['test']}")
            lines.append("")
    width = max(len(r["chapter"]) for r in report["chapters"])
    lines.append(f"{'chapter':<{width}}  {'points':>9}  tests")
    for r in report["chapters"]:
        lines.append(f"{r['chapter']:<{width}}  {r['points']:>4} /{r['max']:>4}  {counts(r)}{status_note(r)}")
    lines.append(f"{'total':<{width}}  {report['points']:>4} /{report['max']:>4}"
                 + ("" if report["complete"] else "  (incomplete: a chapter's tests did not all run)"))
    return "\n".join(lines)


def report_markdown(report):
    lines = ["# Grade", "", f"Repository: `{report['path']}`, graded with the tests of `{report['tests_from']}`. "
             f"Rule: {report['rule']}.", "",
             "| chapter | points | tests |", "|---|---:|---|"]
    for r in report["chapters"]:
        lines.append(f"| {r['chapter']} | {r['points']} / {r['max']} | {counts(r)}{status_note(r)} |")
    lines += [f"| **total** | **{report['points']} / {report['max']}** | |", ""]
    for r in report["chapters"]:
        lines += [f"## {r['chapter']} (`{r['tests_file']}`)", "", "| test | points | outcome |", "|---|---:|---|"]
        lines += [f"| `{t['test']}` | {t['points']} / {t['max']} | {t['outcome']} |" for t in r["tests"]]
        if r["status"] != "ran":
            lines += ["", f"The tests did not all run ({r['status']}). The end of pytest's output:", "", "```",
                      r.get("output", "").strip(), "```"]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Check: every blank is caught, the full student copy fails, the solution scores full marks


def check_headings(root, parts):
    """Every part's lesson section must be a heading of its chapter's README."""
    problems = []
    for part in parts:
        readme = Path(root) / part.chapter / "README.md"
        headings = {line.lstrip("#").strip() for line in readme.read_text(encoding="utf-8").splitlines()
                    if line.startswith("#")} if readme.exists() else set()
        if part.section not in headings:
            problems.append(f"{part.name}: section {part.section!r} is not a heading of {part.chapter}/README.md")
    return problems


def check_blanks_compile(root, by_file):
    problems = []
    for name, parts in by_file.items():
        text = blank((Path(root) / name).read_text(encoding="utf-8"), parts)
        try:
            compile(text, name, "exec")
        except SyntaxError as error:
            problems.append(f"{name}: the blanked file does not compile: {error}")
    return problems


def catch_one(scratch, part, original, candidates, passing, timeout, threads):
    """Blank `part` alone in the scratch copy, run its chapter's tests until one fails (-x), restore the file.
    Tries each list of `candidates` in turn (the tests the full student copy saw raising this very blank,
    then all it saw failing), then the whole test file. Only a test in `passing` (it passes on the solution)
    or a file that no longer imports counts as a catch. -> (the test that caught it or None, seconds)."""
    start = time.time()
    path = Path(scratch) / part.path
    path.write_text(blank(original, [part]), encoding="utf-8")
    try:
        tests_file = chapter_tests(scratch, part.chapter)
        tried = set()
        for targets in [*candidates, [tests_file]]:
            targets = [t for t in targets if t not in tried]
            tried.update(targets)
            if not targets:
                continue
            junit = Path(scratch) / f".junit-{os.getpid()}-{part.begin}.xml"
            cases, _, _ = run_pytest(scratch, targets, junit, timeout, stop_at_first=True, threads=threads)
            junit.unlink(missing_ok=True)
            failed = [test for test, outcome, _ in cases if outcome in ("not attempted", "failed", "error")
                      and (test in passing or "::" not in test)]
            if failed:
                return failed[0], time.time() - start
        return None, time.time() - start
    finally:
        path.write_text(original, encoding="utf-8")


def check_structure(root, by_file, parts, chapters):
    """The checks that run no test: lesson headings, blanked files that compile, a marked body and a test file
    in every chapter -> (problems, the chapters that have a test file)."""
    problems = check_headings(root, parts) + check_blanks_compile(root, by_file)
    problems += [f"chapter {c} has no marked body" for c in chapters if not any(p.chapter == c for p in parts)]
    untested = [c for c in chapters if not list(Path(root).glob(f"tests/test_{c[:2]}_*.py"))]
    problems += [f"chapter {c} has no test file tests/test_{c[:2]}_*.py" for c in untested]
    return problems, [c for c in chapters if c not in untested]


def run_solution_and_student(root, scratch, chapters, jobs, timeout, threads, problems, log):
    """Steps 1 and 2, in parallel: the solution (a copy in scratch/solved) scores full marks, the full student
    copy (scratch/student) fails every chapter -> (the solution's reports, each chapter's failing student tests)."""
    solved, student = Path(scratch) / "solved", Path(scratch) / "student"
    copy_repo(root, solved)
    copy_repo(root, student, chapters)

    def solve(chapter):
        r = grade_chapter(solved, chapter, timeout, threads)
        full = r["status"] == "ran" and r["points"] == r["max"] > 0
        log(f"solution  {chapter:<15} {r['points']:>3} / {r['max']:<3} {'full marks' if full else 'NOT FULL MARKS'}")
        if not full:
            bad = [t["test"] for t in r["tests"] if t["outcome"] not in ("passed", "skipped")]
            problems.append(f"the solution does not score full marks in {chapter} ({r['status']}): {bad[:5]}")
        return r

    def attempt(chapter):
        cases, status, _ = run_pytest(student, [chapter_tests(student, chapter)],
                                      Path(scratch) / f"student-{chapter}.xml", timeout, False, threads)
        failing = [c for c in cases if c[1] not in ("passed", "skipped")]
        passed = sum(outcome == "passed" for _, outcome, _ in cases)
        log(f"student   {chapter:<15} {passed:>3} / {passed + len(failing):<3} "
            f"{'fails, as it must' if failing else 'PASSES: the blanks are not tested'} ({status})")
        if not failing:
            problems.append(f"the full student copy passes every test of {chapter}")
        return failing

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        solved_runs = [pool.submit(solve, c) for c in chapters]
        student_runs = [pool.submit(attempt, c) for c in chapters]
        return [future.result() for future in solved_runs], [future.result() for future in student_runs]


def catch_every_blank(root, scratch, parts, hits, passing, jobs, timeout, threads, problems, log):
    """Step 3: each body blanked alone fails a test of its chapter; `jobs` lanes, one scratch copy each (the
    first is step 1's scratch/solved)."""
    copies = [Path(scratch) / "solved"] + [Path(scratch) / f"solved-{i}" for i in range(1, jobs)]
    for extra in copies[1:]:
        copy_repo(root, extra)
    done = []

    def run_lane(lane):  # the parts of one lane, one after the other, in that lane's own scratch copy
        for part in parts[lane::jobs]:
            scratch_copy = copies[lane]
            original = (scratch_copy / part.path).read_text(encoding="utf-8")
            caught_by, seconds = catch_one(scratch_copy, part, original, hits[part], passing, timeout, threads)
            done.append(part)
            verdict = f"caught by {caught_by}" if caught_by else "NOT CAUGHT by any test"
            log(f"blank {len(done):>2}/{len(parts)} {part.name:<34} {seconds:5.1f} s  {verdict}")
            if not caught_by:
                problems.append(f"blanking {part.name} ({part.task}) fails no test of {part.chapter}: add a test")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run_lane, range(jobs)))


def check(root=REPO, jobs=2, timeout=1800, log=print):
    """Prove the assignment sound; returns a list of problems (empty: sound) and prints as it goes."""
    t0 = time.time()
    by_file = all_parts(root)
    parts = [p for file_parts in by_file.values() for p in file_parts]
    chapters = chapter_folders(root)
    log(f"{len(parts)} marked bodies in {len(by_file)} files; chapters {' '.join(c[:2] for c in chapters)}")
    problems, chapters = check_structure(root, by_file, parts, chapters)
    parts = [p for p in parts if p.chapter in chapters]
    threads = 1 if jobs > 1 else None
    with tempfile.TemporaryDirectory(prefix="classroom-check-") as scratch:
        os.chmod(scratch, 0o755)  # chapter 07's sandbox runs programs as a uid of their own: it must reach the copy
        # 1. the solution scores full marks, 2. the full student copy fails every chapter (both, in parallel)
        solved_report, student_failing = run_solution_and_student(root, scratch, chapters, jobs, timeout, threads,
                                                                  problems, log)
        log(f"({time.time() - t0:.0f} s) the solution and the full student copy ran")
        passing = {f"{r['tests_file']}::{t['test']}" for r in solved_report for t in r["tests"] if t["outcome"] == "passed"}
        hits = {}  # part -> [the tests whose failure shows its blank's message, every failing test of its chapter]
        for chapter, failing in zip(chapters, student_failing):
            for part in [p for p in parts if p.chapter == chapter]:
                hits[part] = [[test for test, _, message in failing if part.message() in message and "::" in test],
                              [test for test, _, _ in failing if "::" in test]]
        # 3. each body blanked alone fails a test of its chapter
        catch_every_blank(root, scratch, parts, hits, passing, jobs, timeout, threads, problems, log)
    log(f"check took {time.time() - t0:.0f} s")
    return problems


# ----------------------------------------------------------------------------------------------------
# The script


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{student,grade,check,list}")
    student = commands.add_parser("student", help="write a student copy with the chosen chapters blanked")
    student.add_argument("out", help="the folder to write the student copy into (new or empty)")
    student.add_argument("--chapters", nargs="+", help="the chapters to blank, e.g. 02 03 (default: all)")
    student.add_argument("--overwrite", action="store_true", help="replace an earlier student copy in OUT")
    grader = commands.add_parser("grade", help="run the chosen chapters' tests and print the score table")
    grader.add_argument("path", nargs="?", default=str(REPO), help="the repository to grade (default: this one)")
    grader.add_argument("--chapters", nargs="+",
                        help="the chapters to grade (default: a student copy's assigned chapters, else all)")
    grader.add_argument("--out-dir", help="where grade.json and grade.md go (default: PATH/runs/classroom)")
    grader.add_argument("--timeout", type=cli.positive_int, default=1800, help="seconds per chapter (default 1800)")
    grader.add_argument("--jobs", type=cli.positive_int, default=1, help="chapters graded at once (default 1)")
    grader.add_argument("--brief", action="store_true", help="print only the per-chapter table")
    checker = commands.add_parser("check", help="prove every blank is caught and the solution scores full marks")
    checker.add_argument("--jobs", type=cli.positive_int, default=2, help="test runs at once (default 2)")
    checker.add_argument("--timeout", type=cli.positive_int, default=1800, help="seconds per test run (default 1800)")
    commands.add_parser("list", help="list every marked body and its lesson section")
    args = parser.parse_args(argv)

    if args.command == "list":
        for parts in all_parts(REPO).values():
            for part in parts:
                print(f"{part.name:<34} {part.task}  (lesson: {part.section})")
    elif args.command == "student":
        chapters = pick_chapters(args.chapters)
        blanked = make_student_copy(args.out, chapters, args.overwrite)
        print(f"wrote a student copy to {args.out}: {len(blanked)} bodies blanked in {' '.join(chapters)}")
        print(f"grade it with: python classroom.py grade {args.out}")
    elif args.command == "grade":
        root = Path(args.path).resolve()
        if not root.is_dir() or not chapter_folders(root):
            raise FileNotFoundError(f"{root} has no chapter folders (01_tokenizer, ...): give the root of a "
                                    f"bytes2chat repository or of a student copy")
        assigned = root / STUDENT_FILE
        default = json.loads(assigned.read_text(encoding="utf-8"))["chapters"] if assigned.exists() else None
        chapters = pick_chapters(args.chapters or default, root)
        out_dir = Path(args.out_dir) if args.out_dir else root / "runs" / "classroom"
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(f"--out-dir {out_dir} is a file, not a folder: give a folder")
        report = grade(root, chapters, args.timeout, args.jobs)
        print(report_text(report, per_test=not args.brief))
        out_dir.mkdir(parents=True, exist_ok=True)
        cli.write_text_atomic(out_dir / "grade.json", json.dumps(report, indent=1) + "\n")
        cli.write_text_atomic(out_dir / "grade.md", report_markdown(report))
        print(f"graded the code of {root} with the tests of {REPO}")
        print(f"wrote {out_dir / 'grade.json'} and {out_dir / 'grade.md'}")
    elif args.command == "check":
        problems = check(REPO, args.jobs, args.timeout)
        if problems:
            for problem in problems:
                print(f"problem: {problem}")
            raise RuntimeError(f"the assignment is not sound: {len(problems)} problem(s), listed above")
        print("sound: the solution scores full marks, the student copy fails, every blank is caught")


if __name__ == "__main__":
    cli.run(main)
