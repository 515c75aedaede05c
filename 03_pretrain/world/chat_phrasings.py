"""Ways a chat user asks: wrappers around a world question, and bare arithmetic in several forms.

A question about a fact has two or three wordings in RELATIONS ("Where does Sam live?"); a user wraps
it in more words ("Quick question: where does Sam live?"). Bare arithmetic comes as "What is 23 + 45?"
and as many other forms ("Calculate 23 + 45.", "23 + 45 = ?"), some asking for the working.

Held-out phrasings (QUESTION_FRAMINGS["ood"], ARITHMETIC_FORMS["ood"]) appear in no training text, so
a model that answers them has learned the task, not the template. Both functions take a split of
splits.SPLITS: "train" and "heldout" use the training phrasings, "ood" the held-out ones. Only chapter
04's chat data uses this module: the pretraining corpus is unchanged (chapter 03's figures stay as they are).

    phrase_question("Where does Sam live?", "train", rng) -> "Quick question: where does Sam live?"
    p, prompt, steps = arithmetic_chat(rng, "heldout")    # a held-out equation: prompt "Calculate 68 - 23."
    p, prompt, steps = arithmetic_chat(rng, "ood")        # and in a held-out form: "How much is 68 - 23?"
"""
from .naming import _capitalize
from .problems import arithmetic_problem
from .splits import _rng, check_split, phrasing

# A framing wraps a question: {q} the question as it opens a sentence, {lq} with a lowercase first letter.
QUESTION_FRAMINGS = {
    "train": ["{q}", "{q}", "Quick question: {lq}", "Can you tell me this? {q}", "{q} Please answer in one sentence.",
              "I was wondering, {lq}", "Do you know the answer to this? {q}", "Tell me please: {lq}"],
    "ood": ["Here is something I have always wanted to know. {q}", "{q} Thanks a lot for your help!",
                "My teacher asked our class this today: {lq}"],
}

# Bare arithmetic: (form, asks for the working). The working is the digit-by-digit scratchpad
# (solution(problem, "column")); without it the reply is "a op b = r." and "The answer is r.".
ARITHMETIC_FORMS = {
    "train": [("What is {e}?", False), ("Calculate {e}.", False), ("{e} = ?", False), ("Work out {e}.", False),
              ("What do you get if you compute {e}?", False), ("What is {e}? Show your working.", True),
              ("Please work out {e} step by step.", True), ("Solve {e} and show each step.", True)],
    "ood": [("How much is {e}?", False), ("Could you figure out {e} for me?", False),
                ("Find {e}, and explain how you got there.", True)],
}


def phrase_question(question, split, rng):
    """`question` ("Where does Sam live?") wrapped in a framing: a training one for split "train" and
    "heldout", a held-out one for "ood"."""
    framing = _rng(rng).choice(QUESTION_FRAMINGS[phrasing(split)])
    return framing.format(q=_capitalize(question), lq=question[:1].lower() + question[1:])


def arithmetic_chat(rng, split="train", ops="+-*", digits=(1, 2, 2)):
    """A bare arithmetic problem of `split` in a chat form: (Problem, prompt, with_steps).

    The numbers come from arithmetic_problem, so a held-out problem is a held-out equation (never in
    training text, equation_key); a basic fact (both numbers <= 20) is always "train". "train" and
    "heldout" use the training forms, "ood" the held-out ones (ARITHMETIC_FORMS[phrasing(split)]); the
    same seed gives the same equation for "heldout" and "ood".
    Example: arithmetic_chat(0, "train") -> (Problem(question="What is 43 - 15?", answer=28, ...),
        "Solve 43 - 15 and show each step.", True)
    """
    check_split(split)
    rng = _rng(rng)
    n_digits = rng.choice(digits) if split == "train" else 2   # every 1-digit problem is a basic fact
    problem = arithmetic_problem(rng, rng.choice(ops), n_digits, split=split)
    step = problem.steps[0]
    form, with_steps = rng.choice(ARITHMETIC_FORMS[phrasing(split)])
    return problem, form.format(e=f"{step.a} {step.op} {step.b}"), with_steps
