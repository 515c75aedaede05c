"""Pictures of the mini-world: small RGB scenes drawn with numpy, with their scene graph, captions and questions.

    scene = make_scene(rng)                  # {"objects": [{"colour", "shape", "size", "row", "col", "dx", "dy"}]}
    image = render(scene)                    # (36, 36, 3) uint8: a 3 x 3 grid of 12-pixel cells
    caption(scene)                           # 'a large red sun at the top left and a small blue box in the centre'
    questions(scene, rng)                    # [{"type": "colour", "question": ..., "answer": "red"}, ...]
    data = scene_splits(seed=0, n_train=..., n_heldout=..., n_composition=...)   # the three splits

Design, so that a 2M-parameter model can learn it on a CPU in minutes: five colours, four shapes, two
sizes, one object per cell of a 3 x 3 grid (the vision transformer's 12 x 12 patches are the cells, so
one patch holds at most one object; small objects move by a pixel inside their cell); within one scene
every object has its own colour and its own shape, so "the red object" and "the sun" name one object.

The split is decided by content, like the world's other held-out items (chapter 03): four colour-shape
pairs (HELDOUT_PAIRS) never occur in a training scene, caption or question. Three splits:
    train        scenes made only of the other 16 pairs;
    heldout      new scenes of the same 16 pairs (no scene graph equal to a training one): new instances;
    composition  scenes holding at least one held-out pair: does "red" + "tree" compose into a red
                 tree the model never saw?
"""
import numpy as np

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 90, 230), "yellow": (235, 200, 30),
           "purple": (150, 60, 190)}
SHAPES = ("sun", "box", "tree", "plus")  # a disc, a square, a triangle on a trunk, a cross
SIZES = {"small": 3, "large": 5}  # half-width in pixels: 6 and 10 pixels wide, in a 12-pixel cell
HELDOUT_PAIRS = (("red", "tree"), ("green", "sun"), ("blue", "plus"), ("yellow", "box"))
GRID, CELL = 3, 12
IMAGE_SIZE = GRID * CELL  # 36
BACKGROUND = (235, 235, 235)
MAX_OBJECTS = 4
PLACES = {(0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
          (1, 0): "on the left", (1, 1): "in the centre", (1, 2): "on the right",
          (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right"}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
RELATIONS = ("to the left of", "to the right of", "above", "below")
QUESTION_TYPES = ("colour", "shape", "size", "count", "spatial", "exists")
# the words a reply is graded on, per question type (grade_reply takes the first of them in the reply)
ANSWER_WORDS = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES),
                "count": tuple(str(n) for n in range(1, MAX_OBJECTS + 1)), "spatial": ("yes", "no"),
                "exists": ("yes", "no")}


# ----------------------------------------------------------------------------------------------------
# Scene graphs


def make_scene(rng, n_objects=None, allowed_pairs=None, must_hold=None, layout=None, keep=None):
    """A random scene graph: 1..MAX_OBJECTS objects, distinct colours, distinct shapes, distinct cells.

    rng: np.random.Generator. allowed_pairs: the (colour, shape) pairs that may appear (default: all).
    must_hold: a (colour, shape) pair the scene must contain (used for the composition split).
    layout: another scene whose cells and sizes to keep; keep="colours" (or "shapes") keeps its colours
    (or shapes) too, so that only the shapes (or colours) are drawn anew.
    Returns {"objects": [{"colour", "shape", "size", "row", "col", "dx", "dy"}, ...]} in reading order.
    """
    allowed = set(allowed_pairs) if allowed_pairs is not None else {(c, s) for c in COLOURS for s in SHAPES}
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    n = len(layout["objects"]) if layout is not None else n
    while True:
        colours = list(rng.permutation(list(COLOURS))[:n])
        shapes = list(rng.permutation(list(SHAPES))[:n])
        if must_hold is not None:
            colours = [must_hold[0]] + [c for c in rng.permutation(list(COLOURS)) if c != must_hold[0]][:n - 1]
            shapes = [must_hold[1]] + [s for s in rng.permutation(list(SHAPES)) if s != must_hold[1]][:n - 1]
        if keep == "colours":
            colours = [o["colour"] for o in layout["objects"]]
        if keep == "shapes":
            shapes = [o["shape"] for o in layout["objects"]]
        pairs = list(zip(colours, shapes))
        if all(p in allowed or p == must_hold for p in pairs):
            break
    cells = rng.permutation(GRID * GRID)[:n]
    sizes = [str(rng.choice(list(SIZES))) for _ in range(n)]
    if layout is not None:
        cells = [o["row"] * GRID + o["col"] for o in layout["objects"]]
        sizes = [o["size"] for o in layout["objects"]]
    objects = []
    for (colour, shape), cell, size in zip(pairs, cells, sizes):
        jitter = 1 if size == "small" else 0  # a large object fills its cell; a small one moves a pixel
        dx, dy = (int(v) for v in rng.integers(-jitter, jitter + 1, size=2))
        objects.append(dict(colour=str(colour), shape=str(shape), size=size, row=int(cell) // GRID,
                            col=int(cell) % GRID, dx=dx, dy=dy))
    objects.sort(key=lambda o: (o["row"], o["col"]))
    return {"objects": objects}


def scene_key(scene):
    """A hashable summary of what a scene shows (jitter left out): equal keys = the same picture to us."""
    return tuple((o["colour"], o["shape"], o["size"], o["row"], o["col"]) for o in scene["objects"])


def pairs_in(scene):
    """The (colour, shape) pairs of a scene: {("red", "sun"), ...}."""
    return {(o["colour"], o["shape"]) for o in scene["objects"]}


# ----------------------------------------------------------------------------------------------------
# Drawing


def shape_mask(shape, radius, cy, cx, size=IMAGE_SIZE):
    """Boolean (size, size) mask of one shape centred at pixel (cy, cx) with half-width `radius`.

    sun (a disc): (x-cx)² + (y-cy)² <= r²;  box (a square): |x-cx| <= r and |y-cy| <= r;
    tree: a triangle, apex up, |x-cx| <= r·(y - (cy-r)) / 1.5r for cy-r <= y <= cy+r/2, on a trunk;
    plus (a cross): two bars of half-width r/3 through the centre.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = y - cy, x - cx
    if shape == "sun":
        return dx ** 2 + dy ** 2 <= radius ** 2 + 0.5
    if shape == "box":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "tree":
        t = (dy + radius) / (1.5 * radius)  # 0 at the apex, 1 where the crown ends
        crown = (t >= 0) & (t <= 1) & (np.abs(dx) <= radius * t + 0.25)
        trunk = (dy > radius / 2) & (dy <= radius) & (np.abs(dx) <= max(0.5, radius / 5))
        return crown | trunk
    if shape == "plus":
        bar = max(1.0, radius / 3)
        return ((np.abs(dx) <= bar) & (np.abs(dy) <= radius)) | ((np.abs(dy) <= bar) & (np.abs(dx) <= radius))
    raise ValueError(f"unknown shape {shape!r}; the shapes are {SHAPES}")


def render(scene):
    """The scene as an (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 RGB image: every object in the centre of its cell."""
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    image[:] = BACKGROUND
    for o in scene["objects"]:
        cy = o["row"] * CELL + (CELL - 1) / 2 + o["dy"]
        cx = o["col"] * CELL + (CELL - 1) / 2 + o["dx"]
        image[shape_mask(o["shape"], SIZES[o["size"]], cy, cx)] = COLOURS[o["colour"]]
    return image


# per-channel mean and std of the training scenes' pixels (CLIP normalises by its data set's, too). Without
# it the mostly-grey background makes every image look alike to a fresh encoder (cosine 0.97 at init).
PIXEL_MEAN, PIXEL_STD = (225.3, 222.3, 222.9), (38.7, 42.8, 44.9)


def to_tensor_images(images):
    """uint8 images (N, H, W, 3) -> float32 array (N, 3, H, W), normalised: (pixel - mean) / std per channel."""
    images = (np.asarray(images, np.float32) - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


# ----------------------------------------------------------------------------------------------------
# Words: captions and questions


def describe(o, place=True):
    """'a large red sun at the top left' (place=False: 'a large red sun')"""
    return f"a {o['size']} {o['colour']} {o['shape']}" + (f" {PLACES[(o['row'], o['col'])]}" if place else "")


def caption(scene, places=True):
    """The scene in one sentence, objects in reading order: 'a large red sun at the top left and a small
    blue box in the centre'. Three or more objects are joined with commas and a final 'and'.
    places=False leaves the places out ('a large red sun and a small blue box')."""
    parts = [describe(o, places) for o in scene["objects"]]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def relation_holds(a, relation, b):
    """Does object a stand `relation` object b? Left/right compare columns, above/below rows (the grid's)."""
    return {"to the left of": a["col"] < b["col"], "to the right of": a["col"] > b["col"],
            "above": a["row"] < b["row"], "below": a["row"] > b["row"]}[relation]


def questions(scene, rng, allowed_pairs=None):
    """One question of every type that applies, with its gold answer and the reply training teaches:
    [{"type", "question", "answer", "reply"}].

    The reply names the object first when the question asks about it ("What colour is the sun?" -> "The
    sun red."; "What shape is the red object?" -> "It is a red sun."): the answer word then comes right
    after the word that says which patch to read, the lookup of lesson section 5 in one step.

    colour, shape, size: about one object; count: how many objects; spatial: yes/no about two objects
    (needs at least two; yes and no equally likely); exists: "Is there a <colour> <shape>?" (yes or no
    equally likely; a "no" asks about a pair from allowed_pairs, so a training question never names a
    held-out pair).
    """
    objects = scene["objects"]
    o = objects[int(rng.integers(len(objects)))]
    out = [dict(type="colour", question=f"What colour is the {o['shape']}?", answer=o["colour"],
                reply=f"The {o['shape']} {o['colour']}."),
           dict(type="shape", question=f"What shape is the {o['colour']} object?", answer=o["shape"],
                reply=f"It is a {o['colour']} {o['shape']}."),
           dict(type="size", question=f"Is the {o['colour']} {o['shape']} large or small?", answer=o["size"],
                reply=f"It is {o['size']}."),
           dict(type="count", question="How many objects are there?", answer=str(len(objects)))]
    if len(objects) >= 2:
        want = bool(rng.integers(2))
        options = [(a, r, b) for a in objects for b in objects if a is not b for r in RELATIONS
                   if relation_holds(a, r, b) == want]
        a, r, b = options[int(rng.integers(len(options)))]
        out.append(dict(type="spatial", question=f"Is the {a['colour']} {a['shape']} {r} the {b['colour']} "
                                                 f"{b['shape']}?", answer="yes" if want else "no"))
    present = pairs_in(scene)
    if rng.integers(2):
        c, s = sorted(present)[int(rng.integers(len(present)))]
        out.append(dict(type="exists", question=f"Is there a {c} {s}?", answer="yes"))
    else:
        absent = sorted(set(allowed_pairs or [(c, s) for c in COLOURS for s in SHAPES]) - present)
        c, s = absent[int(rng.integers(len(absent)))]
        out.append(dict(type="exists", question=f"Is there a {c} {s}?", answer="no"))
    for q in out:  # the other types: the answer word alone
        q.setdefault("reply", q["answer"])
    return out


def grade_reply(reply, answer, qtype):
    """True when the first answer word of `qtype` in the reply is the gold answer ('It is red.' -> 'red').

    >>> grade_reply("red", "red", "colour"), grade_reply("The blue one", "red", "colour")
    (True, False)
    """
    words = [w.strip(".,!?:;'\"()") for w in reply.lower().replace("-", " ").split()]
    words = [str(NUMBER_WORDS.index(w)) if qtype == "count" and w in NUMBER_WORDS else w for w in words]
    first = next((w for w in words if w in ANSWER_WORDS[qtype]), None)
    return first == answer


# ----------------------------------------------------------------------------------------------------
# The splits


def seen_pairs():
    """The 16 colour-shape pairs training may show."""
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT_PAIRS]


SIBLINGS = 4  # training scenes come in groups of this many that share a layout (cells and sizes)


def scene_splits(seed=0, n_train=4000, n_heldout=300, n_composition=300):
    """{"train": [scene...], "heldout": [...], "composition": [...]}: deterministic in `seed`.

    train and heldout use only seen_pairs(); a heldout scene never repeats a training scene's key;
    every composition scene holds at least one HELDOUT_PAIRS pair (taken in turn). Training scenes come
    in groups of SIBLINGS consecutive scenes with the same layout and other colours and shapes: a batch of
    whole groups holds hard negatives, pictures that only colour and shape tell apart (lesson, section 3).
    """
    rng = np.random.default_rng([seed, 8])
    allowed = seen_pairs()
    train, keys = [], set()
    while len(train) < n_train:
        first = make_scene(rng, allowed_pairs=allowed)
        for k in range(min(SIBLINGS, n_train - len(train))):
            keep = ("colours", "shapes")[k % 2]  # siblings differ from the first by their shapes or colours only
            scene = first if k == 0 else make_scene(rng, allowed_pairs=allowed, layout=first, keep=keep)
            train.append(scene)
            keys.add(scene_key(scene))
    heldout = []
    while len(heldout) < n_heldout:
        scene = make_scene(rng, allowed_pairs=allowed)
        if scene_key(scene) not in keys:
            heldout.append(scene)
    composition = [make_scene(rng, allowed_pairs=allowed, must_hold=HELDOUT_PAIRS[i % len(HELDOUT_PAIRS)])
                   for i in range(n_composition)]
    return {"train": train, "heldout": heldout, "composition": composition}


def single_object_scenes(seed, pairs, per_pair):
    """Scenes of one object for every pair in `pairs`, `per_pair` each (random size and cell): the
    zero-shot and linear-probe sets, where "the colour of the image" is well defined."""
    rng = np.random.default_rng([seed, 9])
    return [make_scene(rng, n_objects=1, allowed_pairs=[pair]) for pair in pairs for _ in range(per_pair)]


def scene_by_number(number):
    """Scene N of the gallery chat_vision.py --scene N shows: held-out scenes, N = 0, 1, 2, ..."""
    if number < 0:
        raise ValueError(f"--scene {number}: give a scene number 0 or more")
    rng = np.random.default_rng([number, 10])
    return make_scene(rng, allowed_pairs=seen_pairs() if number % 4 else None)
