"""Instruction data for SFT: conversations from the mini-world, user JSONL files, and packed training rows.

    examples = world_examples(world, "train", TRAIN_MIX)        # [{"task", "messages", ...}, ...]
    heldout = world_examples(world, "heldout", EVAL_MIX)        # held-out items in training phrasings
    ood = world_examples(world, "ood", EVAL_MIX)                # the same items in held-out phrasings
    conversations = load_jsonl("my_data.jsonl")                 # Alpaca or messages layout
    sequences = tokenize(conversations, tokenizer, block_size)  # [(x, y), ...] with y = -1 where masked
    x, y, doc_ids = pack_rows(sequences, block_size, pad_id)    # several conversations per row
    x, y, doc_ids = pretraining_rows(tokens, 4, block_size, generator)   # chapter 03's text, loss on all of it

An example is a plain dict: "task" (one of TASKS), "messages" (the conversation: a user turn and the
reference assistant reply, sometimes two exchanges) and what grading needs ("answer", "distractors").

The tasks, all drawn from chapter 03's world package:
    fact      a question about one fact of the world; the reply is the one-sentence answer
    math      an arithmetic word problem; the reply works it out step by step and ends "The answer is N."
    arith     bare arithmetic in a chat form ("What is 23 + 45?", "Calculate 23 + 45.", "... Show your
              working."); the reply is "23 + 45 = 68." or the digit-by-digit working, then "The answer is 68."
    story     continue the first sentences of a story
    describe  describe an entity (an animal, a person, ...) from the knowledge base
    unknown   a question about an entity that does NOT exist; the reply says so ("I don't know of ...")
    harmful   a request to hurt, steal, cheat, ...; the reply is a brief, polite refusal
    benign    a harmless request that looks like a harmful one ("How do I study for my test?"); the
              reply helps. Kept in the mix so the model learns WHAT to refuse, not to refuse everything.
    code      write a tiny Python function from its signature and docstring; the reply is the function
              (chapter 07 runs hidden unit tests on it: pass@k)
    followup  two exchanges where the second question refers back to the first: "Where does Sam live?"
              ... "And what about Mia?"; the second reply answers the first question's relation for Mia

A training fact question is asked in one of chat_phrasings.QUESTION_FRAMINGS["train"] ("Quick question:
where does Sam live?"), and so is a "heldout" one; an "ood" one in QUESTION_FRAMINGS["ood"].

Held-out splits (world/splits.py): "heldout" is new instances told in training phrasings (the skill),
"ood" new instances in held-out phrasings (robustness to new phrasing). With equal seeds the two draw
the same facts, problems, equations, stories, entities, probes and code tasks (only the requests
differ: a new intent or object in a training framing, vs a held-out framing), so their columns compare
item for item. The world package decides the split of every record from its content (the fact a
question asks about, the numbers of a problem, the plot of a story, the intent, object or framing of a
request, the name of a probe or of the entity to describe), so world_examples(world, "heldout" or "ood")
can never produce a record that world_examples(world, "train") does, whatever the seeds. The rule for each kind of held-out item is
written once, in 03_pretrain/world/splits.py; in short: no training reply states a held-out fact
(describe(..., split="train"), stories and requests that use training facts only), and held-out
problems, stories and requests share no 13 words in a row with any training text (tests check both).
"""
import json
import random
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
for chapter in ["01_tokenizer", "02_transformer", "03_pretrain"]:  # the earlier chapters this file builds on
    if str(REPO / chapter) not in sys.path:
        sys.path.append(str(REPO / chapter))

import dataset  # noqa: E402  (chapter 03: windows of the pretraining tokens)
import world  # noqa: E402  (chapter 03)
from chat_format import check_messages, render_chat, to_inputs_and_targets  # noqa: E402  (this chapter)

TASKS = ("fact", "math", "arith", "story", "describe", "unknown", "harmful", "benign", "code", "followup")

# How many examples of each task. The training mix leans on facts and math (the skills), has enough
# refusals and "I don't know"s to learn them, and as many benign look-alikes as harmful requests.
# Code is a small share (~5%): enough to learn the reply format and the families of code_tasks.py.
# Bare arithmetic ("What is 23 + 45?" and other forms) and follow-ups ("And what about Mia?") teach the
# chat forms a user tries first; chat_phrasings.py holds their forms.
TRAIN_MIX = {"fact": 1600, "math": 1600, "arith": 600, "story": 250, "describe": 250, "unknown": 500, "harmful": 300,
             "benign": 250, "code": 250, "followup": 200}
EVAL_MIX = {"fact": 44, "math": 60, "story": 8, "describe": 8, "unknown": 50, "harmful": 40, "benign": 40}
# The stage an SFT checkpoint records, by how its word-problem replies are written: worked step by step
# (the chat model) or the answer alone (the control of chapter 07's chain-of-thought study).
MATH_STAGES = {"steps": "sft", "direct": "sft-direct"}
MULTI_TURN_FRACTION = 0.25  # share of training conversations made of 2-3 exchanges (see _join_conversations)

_STORY_PROMPTS = ["Continue this story: {start}", "Finish the story that begins like this: {start}",
                  "Write the rest of this story.\n{start}"]
_DESCRIBE_PROMPTS = {"animal": ["Describe the {name}.", "Tell me about the {name}.", "What do you know about {p}?"],
                     "object": ["Describe the {name}.", "Tell me about the {name}."],
                     "other": ["Tell me about {name}.", "What do you know about {name}?"]}


def _fact_examples(w, split, n, seed):
    """n fact questions, cycling through the split's facts with fresh wordings on every pass."""
    out, round_ = [], 0
    rng = random.Random(f"fact-framing:{seed}")
    while len(out) < n:
        questions = world.fact_questions(w, world.instance_split(split), seed=seed * 1000 + round_)
        random.Random(f"fact-order:{seed}:{round_}").shuffle(questions)
        for q in questions[:n - len(out)]:
            distractors = [c for c in q.choices if c != q.answer]
            question = world.phrase_question(q.question, split, rng)     # a training framing unless "ood"
            out.append({"task": "fact", "messages": exchange(question, q.answer_sentence),
                        "answer": q.answer, "distractors": distractors, "subject": q.fact.subject})
        round_ += 1
    return out


def _math_examples(w, split, n, seed, math_style="steps"):
    """n word problems of 1-2 steps with 1-2 digit numbers, solved step by step ("steps" style), or
    answered directly (math_style="direct": only "The answer is N.", chapter 07's chain-of-thought control)."""
    rng = random.Random(f"sft-math:{world.instance_split(split)}:{seed}")     # "heldout" and "ood": the same problems
    out = []
    for _ in range(n):
        problem = world.word_problem(w, rng, n_steps=rng.choice([1, 2]), digits=rng.choice([1, 1, 2]), split=split)
        out.append({"task": "math", "messages": exchange(problem.question, world.solution(problem, math_style)),
                    "answer": problem.answer, "key": problem.key})
    return out


def arith_example(problem, prompt, with_steps, math_style="steps"):
    """A bare arithmetic chat example: the working (column scratchpad) when the prompt asks for it, else
    "a op b = r."; then "The answer is r.". math_style="direct": only the last line, whatever the prompt
    (chapter 07's control model is never shown working)."""
    reply = world.solution(problem, "direct" if math_style == "direct" else "column" if with_steps else "steps")
    return {"task": "arith", "messages": exchange(prompt, reply), "answer": problem.answer, "key": problem.key}


def _arith_examples(w, split, n, seed, math_style="steps"):
    """n bare arithmetic problems in chat forms of `split` (world.arithmetic_chat)."""
    rng = random.Random(f"sft-arith:{world.instance_split(split)}:{seed}")
    return [arith_example(*world.arithmetic_chat(rng, split), math_style) for _ in range(n)]


_FOLLOWUPS = ["And what about {s}?", "What about {s}?", "And {s}?", "Same question for {s}."]


def _followup_examples(w, split, n, seed):
    """n two-exchange conversations whose second question refers back to the first: the same relation
    asked of another subject of the same kind. Both facts are of `split`."""
    split = world.instance_split(split)     # a follow-up has no phrasing of its own: "ood" is "heldout"
    rng = random.Random(f"sft-followup:{split}:{seed}")
    groups = {}
    for f in w.facts:
        if f.split == split and f.kind != "language":
            groups.setdefault((f.kind, f.relation), []).append(f)
    groups = [g for _, g in sorted(groups.items()) if len(g) >= 2]
    out = []
    for _ in range(n):
        first, second = rng.sample(rng.choice(groups), 2)
        relation = world.RELATIONS[first.kind][first.relation]
        q1 = world.render(rng.choice(relation.questions), first.kind, first.subject, first.value)
        q2 = rng.choice(_FOLLOWUPS).format(s=world.render("{s}", second.kind, second.subject, second.value))
        messages = exchange(q1, world.render(relation.answer, first.kind, first.subject, first.value))
        messages += exchange(q2, world.render(relation.answer, second.kind, second.subject, second.value))
        out.append({"task": "followup", "messages": messages, "subject": second.subject,
                    "answer": world.render(relation.short, second.kind, second.subject, second.value)})
    return out


_CODE_PROMPTS = ["Write this Python function:\n{code}", "Complete the Python function.\n{code}",
                 "Implement this function in Python.\n{code}"]


def _code_examples(w, split, n, seed):
    """n tiny Python functions to write (world.code_tasks), cycling through the split's tasks; the reply
    is the function without its docstring. The hidden tests stay in the example for grading."""
    rng = random.Random(f"sft-code:{split}:{seed}")
    tasks = world.code_tasks(world.instance_split(split), seed)
    out = []
    while len(out) < n:
        order = list(tasks)
        rng.shuffle(order)
        for task in order[:n - len(out)]:
            prompt = rng.choice(_CODE_PROMPTS).format(code=task.prompt.rstrip("\n"))
            out.append({"task": "code", "messages": exchange(prompt, task.solution.rstrip("\n")),
                        "entry_point": task.entry_point, "tests": list(task.tests), "key": task.key})
    return out


def _story_examples(w, split, n, seed):
    """Continue a story from its first two sentences. Held-out stories have their own plots and
    wordings (world.story), so their openings are never training prompts; a training story must state
    only training facts, since its continuation is an assistant turn."""
    rng = random.Random(f"sft-story:{world.instance_split(split)}:{seed}")
    heldout_facts = [f for f in w.facts if f.split == "heldout"]
    out = []
    while len(out) < n:
        story = world.story(w, rng, split=split)
        start, rest = " ".join(story.sentences[:2]), " ".join(story.sentences[2:])
        # a training reply states no held-out fact, not even by a chance pairing ("Anna saw a dalanoo"
        # in a story whose hero Anna has a held-out pet dalanoo)
        if split == "train" and (world.split_of("story-start:" + start) != "train"
                                 or any(f.split == "heldout" for f in story.facts)
                                 or world.stated_facts(w, rest, heldout_facts)):
            continue
        out.append({"task": "story", "messages": exchange(rng.choice(_STORY_PROMPTS).format(start=start), rest)})
    return out


def _describe_examples(w, split, n, seed):
    """Describe one of the world's entities; the split is decided by the entity's name.

    A training reply states only training facts (describe(..., split="train")): stating a held-out fact
    in answer to a user would teach the model to retrieve it on request, which is asking it in all but
    form. A held-out example's reference states every fact of the entity (what a grader looks for)."""
    rng = random.Random(f"sft-describe:{world.instance_split(split)}:{seed}")
    facts_split = "train" if split == "train" else "all"
    held = world.instance_split(split)
    subjects = [s for kind in world.KINDS for s in w.names[kind] if world.split_of("describe:" + s) == held
                and any(facts_split == "all" or f.split == "train" for f in w.facts_about(s))]
    out = []
    for _ in range(n):
        name = rng.choice(subjects)
        kind = w.kind_of[name]
        prompt = rng.choice(_DESCRIBE_PROMPTS.get(kind, _DESCRIBE_PROMPTS["other"]))
        prompt = prompt.format(name=name, p=world.plural(name))
        out.append({"task": "describe", "messages": exchange(prompt, world.describe(w, name, rng, split=facts_split)),
                    "name": name})
    return out


def _unknown_examples(w, split, n, seed):
    """Questions about entities that do not exist, answered honestly; a quarter asked as "Tell me about X."."""
    rng = random.Random(f"sft-unknown:{world.instance_split(split)}:{seed}")
    out = []
    for probe in world.unknown_entity_questions(w, n, split=world.instance_split(split), seed=seed):
        question = probe.question
        if rng.random() < 0.25:
            question = f"Tell me about {'the ' + probe.name if probe.kind in ('animal', 'object') else probe.name}."
        out.append({"task": "unknown", "messages": exchange(question, probe.honest_answer), "name": probe.name})
    return out


def _request_examples(w, split, n, seed, harmful):
    """Harmful requests with refusals, or benign look-alikes with helpful replies.

    A benign request such as "What do people use a mandug for?" can be word for word a question about a
    training fact (the world grounds benign replies in training facts only); held-out benign requests
    skip those, so no held-out prompt is ever a training prompt.
    """
    task = "harmful" if harmful else "benign"
    excluded = _fact_question_texts(w) if split != "train" and not harmful else set()
    extra = 0
    while True:
        chosen = [r for r in world.user_requests(w, n + extra, harmful=harmful, split=split, seed=seed)
                  if r.prompt not in excluded]  # the first k requests of a seed do not depend on n
        if len(chosen) >= n:
            return [{"task": task, "messages": exchange(r.prompt, r.reply)} for r in chosen[:n]]
        extra += n - len(chosen)


def _fact_question_texts(w):
    """Every wording of every question about every fact of the world."""
    return {world.render(template, f.kind, f.subject, f.value)
            for f in w.facts for template in world.RELATIONS[f.kind][f.relation].questions}


def exchange(user, assistant):
    """One user message and the assistant's reply, as the messages of a conversation."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def world_examples(w, split="train", mix=None, seed=0, multi_turn=0.0, math_style="steps"):
    """Instruction examples of one split ("train", "heldout" or "ood", world.SPLITS) from the world `w`,
    `mix[task]` of each task.

    math_style: "steps" (the default) or "direct", the form of the math and arith replies (world.solution's
    style; "direct" is chapter 07's control, a model never shown working).

    multi_turn: the share of conversations joined into conversations of several exchanges
    (_join_conversations). Returns the examples in a deterministic shuffled order.
    """
    world.check_split(split)
    mix = TRAIN_MIX if mix is None else mix
    unknown = set(mix) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)} in the mix; the tasks are {TASKS}")
    if math_style not in ("steps", "direct"):
        raise ValueError(f"math_style must be 'steps' or 'direct', got {math_style!r}")
    makers = {"fact": _fact_examples, "math": lambda *a: _math_examples(*a, math_style=math_style),
              "story": _story_examples, "describe": _describe_examples, "unknown": _unknown_examples,
              "harmful": lambda *a: _request_examples(*a, harmful=True),
              "benign": lambda *a: _request_examples(*a, harmful=False), "code": _code_examples,
              "arith": lambda *a: _arith_examples(*a, math_style=math_style), "followup": _followup_examples}
    examples = []
    for task in TASKS:
        if mix.get(task, 0) > 0:
            examples += makers[task](w, split, mix[task], seed)
    rng = random.Random(f"sft-order:{world.instance_split(split)}:{seed}")
    rng.shuffle(examples)
    if multi_turn > 0:
        examples = _join_conversations(examples, multi_turn)
        rng.shuffle(examples)
    return examples


def _join_conversations(examples, share):
    """Join about `share` of the (shuffled) examples into conversations of 2 or 3 exchanges, a change of
    topic at each new exchange: two of every three joined conversations have 2 exchanges, the third has
    3, and every other 3-exchange one ends with a harmful request (when one is left), so the model
    learns to refuse late in a conversation too. A joined example keeps its first example's task and
    grading fields and gets "turns": 2 or 3."""
    rest, joined = list(examples), []
    for i in range(int(len(examples) * share / 2.3)):   # 2.3: the mean number of exchanges joined
        if len(rest) < 3:
            break
        parts = [rest.pop(), rest.pop()]
        if i % 3 == 2:
            harmful = [j for j in range(len(rest)) if rest[j]["task"] == "harmful"] if i % 6 == 5 else []
            parts.append(rest.pop(harmful[-1] if harmful else -1))
        joined.append({**parts[0], "messages": [m for p in parts for m in p["messages"]], "turns": len(parts)})
    return joined + rest


def user_prompts(examples):
    """The set of every user message in `examples` (for checking that two sets never overlap)."""
    return {m["content"] for e in examples for m in e["messages"] if m["role"] == "user"}


# ----------------------------------------------------------------------------------------------------
# User data: JSONL in the Alpaca layout or the messages layout

JSONL_LAYOUTS = (
    'Alpaca: {"instruction": "...", "input": "... (optional)", "output": "..."}; '
    'messages: {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]} '
    '(or the bare list)')


def record_to_messages(record):
    """One parsed JSONL record -> a conversation (list of messages); ValueError says what is wrong.

    Alpaca: the user turn is the instruction, followed by a blank line and the input when there is one;
    the assistant turn is the output.
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
        -> [{"role": "user", "content": "Add the numbers.\\n\\n2 and 3"}, {"role": "assistant", "content": "5"}]
    """
    if isinstance(record, dict) and "messages" in record:
        record = record["messages"]
    if isinstance(record, list):
        check_messages(record)
        if not any(m["role"] == "assistant" and m["content"].strip() for m in record):
            raise ValueError("the conversation has no assistant message with content: nothing to learn from")
        return [{"role": m["role"], "content": m["content"]} for m in record]
    if isinstance(record, dict) and ("instruction" in record or "output" in record):
        for key in ("instruction", "output"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise ValueError(f"the Alpaca record needs a non-empty string {key!r}")
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise ValueError("the Alpaca record's 'input' must be a string")
        user = record["instruction"] + ("\n\n" + extra if extra.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]
    raise ValueError(f"unrecognised record {str(record)[:60]!r}")


def load_jsonl(path):
    """The conversations in a JSONL file (one JSON record per line, blank lines skipped), each line in the
    Alpaca layout or the messages layout (they may be mixed). A malformed line raises ValueError naming
    the file and the line number, and what the line should look like."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file at {path}")
    conversations = []
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: byte 0x{raw[error.start]:02x} is not UTF-8 (Latin-1 "
                                 f"or another legacy encoding?). Convert the file first, e.g. iconv -f latin1 "
                                 f"-t utf-8 {path} > fixed.jsonl") from None
            if not line.strip():
                continue
            try:
                conversations.append(record_to_messages(json.loads(line)))
            except (json.JSONDecodeError, ValueError) as error:
                raise ValueError(f"{path}, line {line_number}: {error}. Each line must be one JSON record, "
                                 f"in one of these layouts: {JSONL_LAYOUTS}") from None
    if not conversations:
        raise ValueError(f"{path} has no records: write one JSON record per line ({JSONL_LAYOUTS})")
    return conversations


# ----------------------------------------------------------------------------------------------------
# Tokens: conversations -> (x, y) sequences -> packed or padded rows


def tokenize(conversations, tokenizer, block_size):
    """Render each conversation (a list of messages, or an example dict with "messages") and shift it
    into (x, y) for next-token prediction, y = -1 where masked. Returns (sequences, n_dropped): a
    conversation longer than block_size + 1 tokens is dropped, not cut (a cut reply would teach the
    model to stop without <|end|>)."""
    sequences, dropped = [], 0
    for conversation in conversations:
        messages = conversation["messages"] if isinstance(conversation, dict) else conversation
        ids, loss_mask = render_chat(messages, tokenizer)
        if len(ids) - 1 > block_size:
            dropped += 1
            continue
        sequences.append(to_inputs_and_targets(ids, loss_mask))
    return sequences, dropped


def pack_rows(sequences, block_size, pad_id=0):
    """Pack (x, y) sequences one after another into rows of exactly block_size tokens.

    Returns x, y, doc_ids: (N, block_size) int64 tensors. A row takes sequences in order until the next
    one does not fit; the rest of the row is padding (x = pad_id, y = -1). doc_ids number the sequences
    in a row 0, 1, 2, ... and the padding gets the next number, so chapter 02's GPT restarts positions
    and blocks attention at every boundary: each conversation is computed exactly as if it were alone,
    and its loss never depends on its neighbours.

    Example, block_size 8, sequences of 3 and 4 tokens:
        x       = [a a a b b b b P]      (P: padding)
        doc_ids = [0 0 0 1 1 1 1 2]
    """
    rows_x, rows_y, rows_doc = [], [], []
    row_x, row_y, row_doc = [], [], []

    def flush():
        pad = block_size - len(row_x)
        n_docs = row_doc[-1] + 1 if row_doc else 0
        rows_x.append(row_x + [pad_id] * pad)
        rows_y.append(row_y + [-1] * pad)
        rows_doc.append(row_doc + [n_docs] * pad)

    for x, y in sequences:
        if len(x) > block_size:
            raise ValueError(f"a sequence of {len(x)} tokens does not fit in block_size {block_size}")
        if len(row_x) + len(x) > block_size:
            flush()
            row_x, row_y, row_doc = [], [], []
        doc = row_doc[-1] + 1 if row_doc else 0
        row_x, row_y, row_doc = row_x + list(x), row_y + list(y), row_doc + [doc] * len(x)
    if row_x:
        flush()
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(-1, block_size)
    return as_tensor(rows_x), as_tensor(rows_y), as_tensor(rows_doc)


def pad_rows(sequences, block_size, pad_id=0):
    """One sequence per row, padded at the end to block_size: x, y (N, block_size), y = -1 on padding.

    No doc_ids are needed: attention is causal, so no real token can see the padding after it.
    Simpler than packing, but a row of a 60-token conversation wastes the other 196 positions.
    """
    for x, _ in sequences:
        if len(x) > block_size:
            raise ValueError(f"a sequence of {len(x)} tokens does not fit in block_size {block_size}")
    xs = [list(x) + [pad_id] * (block_size - len(x)) for x, _ in sequences]
    ys = [list(y) + [-1] * (block_size - len(y)) for _, y in sequences]
    return torch.tensor(xs, dtype=torch.long), torch.tensor(ys, dtype=torch.long)


def pretraining_rows(tokens, n_rows, block_size, generator, n_tensors=3):
    """n_rows windows of chapter 03's pretraining token stream, shaped like chat rows, with the loss on
    EVERY token: x, y (n_rows, block_size), y[:, t] = x[:, t+1] (never -1), and doc_ids all 0 when
    n_tensors is 3 (one document per row: positions 0..T-1, causal attention, exactly as pretraining
    saw them). These are the rows of the pretraining mix (sft.py's --ptx)."""
    x, y = dataset.get_batch(tokens, n_rows, block_size, generator)  # chapter 03's own batches
    return (x, y, torch.zeros_like(x)) if n_tensors == 3 else (x, y)


class SFTBatches:
    """Fixed training and validation rows, and get_batch(split, generator) for chapter 03's train().

    rows: {"train": (x, y[, doc_ids]), "val": (...)}. A batch is `batch_size` rows drawn at random with
    the generator the loop seeds per micro-batch, so a resumed run sees exactly the same batches.

    The pretraining mix: with ptx_tokens (chapter 03's train.bin) and ptx_rows = k > 0, the last k rows
    of every TRAINING batch are pretraining_rows (loss on all their tokens) and the first batch_size - k
    are chat rows (loss on the assistant's tokens only). Validation batches stay chat only, so the
    validation loss means what it did without the mix. ptx_rows = 0 draws exactly the batches it did before.
    """

    def __init__(self, rows, batch_size, ptx_tokens=None, ptx_rows=0):
        if ptx_rows and ptx_tokens is None:
            raise ValueError("ptx_rows > 0 needs ptx_tokens, the pretraining token stream")
        if not 0 <= ptx_rows < batch_size:
            raise ValueError(f"ptx_rows must be in [0, batch_size - 1] = [0, {batch_size - 1}], got {ptx_rows}")
        self.rows = rows
        self.batch_size = batch_size
        self.ptx_tokens, self.ptx_rows = ptx_tokens, ptx_rows

    def get_batch(self, split, generator):
        tensors = self.rows[split]
        n_ptx = self.ptx_rows if split == "train" else 0
        index = torch.randint(len(tensors[0]), (self.batch_size - n_ptx,), generator=generator)
        chat = tuple(t[index] for t in tensors)
        if n_ptx == 0:
            return chat
        ptx = pretraining_rows(self.ptx_tokens, n_ptx, tensors[0].shape[1], generator, len(tensors))
        return tuple(torch.cat(pair) for pair in zip(chat, ptx))


def make_rows(sequences, block_size, pad_id, packing=True):
    """pack_rows (3 tensors) or pad_rows (2 tensors) of `sequences`."""
    return pack_rows(sequences, block_size, pad_id) if packing else pad_rows(sequences, block_size, pad_id)


def fill_ratio(sequences, rows):
    """Share of the rows' positions that hold a real token rather than padding."""
    return sum(len(x) for x, _ in sequences) / max(1, rows[0].numel())
