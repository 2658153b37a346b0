"""Public-domain English the benchmarks build their prompts from (Dickens, Lincoln, Melville), so
every harness reads the same kind of text and none ships its own copy."""

PASSAGES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, "
    "it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had "
    "everything before us, we had nothing before us, we were all going direct to Heaven, we were all going "
    "direct the other way -- in short, the period was so far like the present period, that some of its "
    "noisiest authorities insisted on its being received, for good or for evil, in the superlative degree "
    "of comparison only.",
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived "
    "in Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a "
    "great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long "
    "endure. We are met on a great battle-field of that war. We have come to dedicate a portion of that "
    "field, as a final resting place for those who here gave their lives that that nation might live. It "
    "is altogether fitting and proper that we should do this. But, in a larger sense, we can not dedicate "
    "-- we can not consecrate -- we can not hallow -- this ground.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my "
    "purse, and nothing particular to interest me on shore, I thought I would sail about a little and see "
    "the watery part of the world.",
)

# all of it as one text, for prompts of any length
TEXT = " ".join(PASSAGES) + " "

# The speech evaluation set (`edgeai bench stt`, the WER tests): utterances cut from PASSAGES at
# sentence or clause boundaries, each long enough that one wrong word is under 10% WER. Chosen
# before any transcript was seen; scored after openai-whisper's EnglishTextNormalizer on both sides.
SENTENCES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
    "foolishness.",
    "It was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the "
    "season of Darkness.",
    "It was the spring of hope, it was the winter of despair, we had everything before us, we had nothing "
    "before us.",
    "We were all going direct to Heaven, we were all going direct the other way.",
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived "
    "in Liberty, and dedicated to the proposition that all men are created equal.",
    "Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and "
    "so dedicated, can long endure.",
    "We have come to dedicate a portion of that field, as a final resting place for those who here gave "
    "their lives that that nation might live.",
    "It is altogether fitting and proper that we should do this.",
    "But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground.",
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, "
    "I thought I would sail about a little.",
    "Having nothing particular to interest me on shore, I thought I would sail about and see the watery "
    "part of the world.",
    "In short, the period was so far like the present period, that some of its noisiest authorities "
    "insisted on its being received, for good or for evil.",
)
