"""The mini-world: a small, consistent, invented English world, generated from a seed.

Every later chapter draws its data from here, offline and in seconds:

    chapter 03  pretraining text: facts, stories, arithmetic, word problems, dialogues    make_corpus
    chapter 04  instruction data: questions about facts, word problems, writing tasks    fact_questions, word_problem,
                (continue a story, describe an animal), unknown entities, requests        story, describe,
                                                                                          unknown_entity_questions,
                                                                                          user_requests
    chapter 05  preference pairs: the right answer vs a wrong-but-plausible one: a       wrong_fact_answer, wrong_solution,
                wrong value, a worked slip, an invented fact about an unknown entity,     ProbeQuestion.invented_answer,
                compliance with a harmful request, over-refusal of a benign one           Request.rejected
                PPO's own requests, new to SFT and to every evaluation set                rl_requests
    chapter 07  held-out evaluation sets with gold answers: split="heldout"/"ood" in     fact_questions, word_problem,
                generator (facts, problems, expressions, stories, descriptions,           arithmetic_expression, story,
                dialogues, requests, unknown entities, code tasks); the decontamination   descriptions, dialogue_item,
                checks                                                                    code_tasks, ...

`import world` gives every name below; each idea lives in one module of this package. Read them in
this order:

    1. splits.py           split_of(key): a hash of a record's CONTENT puts it in "train" or "heldout",
                           the same for every seed, so a held-out problem can never appear in training text;
                           SPLITS: every generator takes split "train", "heldout" (held-out instances in
                           training phrasings) or "ood" (held-out instances in held-out phrasings)
    2. naming.py           the pools of values (jobs, colours, ...) and the invented-name generator
    3. knowledge.py        build_world(seed) -> World: countries, towns, people, animals, objects and their
                           facts; RELATIONS holds every sentence and question template of every fact
    4. facts.py            state_fact, describe, descriptions, fact_question(s), wrong_fact_answer
    5. probes.py           nonexistent_names, unknown_entity_questions (entities that do not exist)
    6. scratchpads.py      column_addition / column_subtraction / column_multiplication / long_division
                           (digit-by-digit scratchpads), equations, equation_key, is_training_safe
    7. problems.py         Step, Problem, solution(problem, style), wrong_problem_solution, arithmetic_problem
    8. expressions.py      arithmetic_expression: "What is 12 + 7 * 3 - 4?", worked with precedence; wrong_solution (any problem)
    9. word_problems.py    word_problem: multi-step problems about the world's people
   10. stories.py          story(world, rng): TinyStories-like, built from plot arcs and the world's facts
   11. dialogues.py        dialogue(world, rng): two of the world's people talking; dialogue_item
   12. assistant_requests.py user_requests(world, n, harmful): requests to an assistant; rl_requests: RL's own
   13. corpus.py           corpus_documents, make_corpus: documents joined by "<|endoftext|>"
   14. decontamination.py  TrainingText (GPT-3's 13-gram check), stated_facts
   15. code_tasks.py       code_tasks(split): tiny Python functions (signature, docstring, hidden tests), pass@k
   16. chat_phrasings.py   phrase_question, arithmetic_chat: the forms a chat user asks in (chapter 04 only)

`python 03_pretrain/show_world.py` prints a sample of every kind of document, or writes the corpus.

Conventions that keep the world consistent (tests check each one):
- every fact has one value, and every sentence that states it (present or past tense, in a paragraph,
  a story, a quiz or a dialogue) is rendered from the one value in the knowledge base;
- numbers are always written as plain decimal digits, with no separators: "3200", never "3,200";
- names are invented by a syllable generator, and a hash of the name decides whether it may be a
  world entity or is reserved for questions about entities that do not exist (hallucination probes),
  so a probe name can never be a real entity, whatever the seed;
- all randomness flows from explicit seeds through random.Random (string seeds are hashed with
  sha512, never with Python's salted hash), so the output is byte-identical for a given seed on every
  machine. (Python promises stable sequences across versions only for random.random(); choice and
  randrange have not changed in years, and a test pins a corpus hash to notice if they ever do.)
"""
from .splits import (HELDOUT_FRACTION, SPLITS, _rng, _sample, check_split, instance_split, name_namespace, phrasing,
                     split_of, unit_hash)
from .naming import (ANIMAL_FOODS, COLOURS, HABITATS, JOBS, KINDS, KNOWN_FOR, LEGS, MATERIALS, PEOPLE,
                     PEOPLE_FOODS, SIZES, USES, _capitalize, invent_name, plural, with_article)
from .knowledge import RELATIONS, Fact, Relation, World, _person_words, build_world
from .facts import (Description, FactQuestion, describe, descriptions, fact_question, fact_questions,
                    possible_values, render, state_fact, subject_fields, wrong_fact_answer)
from .probes import ProbeQuestion, nonexistent_names, unknown_entity_questions
from .scratchpads import (BASIC_LIMIT, EQUATION, PLACES, apply, column_addition, column_multiplication,
                          column_subtraction, equation_key, equations, is_basic, is_training_safe,
                          long_division, scratchpad)
from .problems import ASK_FORMS, STYLES, Problem, Step, arithmetic_problem, ask, solution
from .expressions import arithmetic_expression, expression_steps, wrong_expression_solution, wrong_solution
from .word_problems import FAMILIES, ITEMS, WORDINGS, word_problem
from .stories import _ARCS, _HELDOUT_ARCS, Story, _story_context, story
from .dialogues import DialogueItem, dialogue, dialogue_item
from .assistant_requests import (BENIGN_INTENTS, FRAMINGS, HARMFUL_INTENTS, HELDOUT_INTENTS, OVER_REFUSALS, RL_BENIGN_INTENTS,
                                 RL_OBJECTS, Request, rl_requests, user_requests)
from .corpus import DEFAULT_CORPUS_BYTES, DOC_MIX, EOT, corpus_documents, document, make_corpus
from .decontamination import NGRAM, TrainingText, stated_facts, word_ngrams, words
from .code_tasks import CodeTask, code_task, code_tasks
from .chat_phrasings import ARITHMETIC_FORMS, QUESTION_FRAMINGS, arithmetic_chat, phrase_question

# The modules of the package, in reading order (the doctest run of tests/test_03_pretrain.py walks them).
MODULES = ("splits", "naming", "knowledge", "facts", "probes", "scratchpads", "problems", "expressions", "word_problems",
           "stories", "dialogues", "assistant_requests", "corpus", "decontamination", "code_tasks",
           "chat_phrasings")
