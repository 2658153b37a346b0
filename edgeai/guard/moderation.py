# ruff: noqa: E501  (pattern tables: one rule per entry reads better than a rule split to fit)
"""Content moderation: a policy list of categories, each a set of patterns, and an optional judge.

Boundary: a text -> the categories it falls in (`check`), pure regular expressions over the
folded text; `judged` adds a judge, any callable `judge(text) -> Verdict | bool | str` (the loaded
model through `llm_judge`, a remote moderation endpoint, a test's lambda), consulted only when
the user turns it on and only when the patterns found nothing. The patterns look for a harmful
request or statement (how to make a pipe bomb, a threat, a method of suicide), not for words:
"kill a Python process", "the movie was a bomb" and a question asking where to find help pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from edgeai.guard.text import fold

_HOWTO = (r"(?:how (?:do|can|could|would|should|to|much|many)|how i|steps?|step-by-step|instructions|guide|"
          r"tutorial|recipe|method|way|ways|tell me|show me|explain|teach|give me|help me|best|easiest|"
          r"quickest|describe)")
_MAKE = (r"(?:make|making|build|building|construct|assemble|create|creating|produce|manufacture|synthesi[sz]e|"
         r"synthesis|cook|cooking|brew|mix|prepare|3d print|get|buy|obtain)")
_PERSON = (r"(?:someone|somebody|a person|people|(?:my|his|her|their|the|a|this|that) (?:\w+ )?(?:wife|husband|"
           r"ex|roommate|neighbou?r|boss|teacher|classmate|coworker|colleague|girlfriend|boyfriend|kid|child|"
           r"mom|dad|mother|father|brother|sister|friend|family|journalist|streamer|cop|police(?:man)?|officer|"
           r"president|senator|judge|man|woman|guy|girl|boy|student|students)|him|her|them|everyone|children|kids)")

CATEGORIES: dict[str, list[str]] = {
    "weapons": [
        rf"\b{_MAKE}\b[^.?!]{{0,40}}\b(?:pipe ?bombs?|bombs?|explosives?|ieds?|detonators?|grenades?|napalm|"
        r"thermite|molotov(?: cocktails?)?|silencers?|suppressors?|ghost guns?|untraceable (?:guns?|firearms?))\b",
        rf"\b{_HOWTO}\b[^.?!]{{0,50}}\b(?:pipe ?bombs?|homemade explosives?|ieds?|molotov cocktails?|napalm)\b",
        r"\b(?:untraceable|unregistered|ghost) (?:guns?|firearms?|weapons?)\b|\bwithout a background check\b",
    ],
    "mass_harm": [
        r"\b(?:culture|grow|weaponi[sz]e|spread|release|aerosoli[sz]e|make|produce|synthesi[sz]e|extract)\b"
        r"[^.?!]{0,30}\b(?:anthrax|smallpox|ricin|sarin|vx|botulinum|nerve agents?|bioweapons?|chemical weapons?|"
        r"poison gas|toxic gas|chlorine gas)\b",
        r"\bshoot up (?:my|the|a|this) \w+|\b(?:mass shooting|school shooting)\b[^.?!]{0,40}\b(?:plan|help|how)\b"
        r"|\bplan\b[^.?!]{0,40}\b(?:massacre|mass shooting|attack on (?:a|the|my) (?:school|church|mosque|synagogue))",
    ],
    "violence": [
        rf"\b(?:kill|murder|stab|shoot|strangle|choke|poison|hurt|harm|injure|beat up|torture|kidnap|assault|"
        rf"attack|maim|drown|suffocate)\b (?:\w+ )?{_PERSON}\b[^.?!]{{0,60}}(?:\?|\bwithout\b|\bso (?:it|they|that)|"
        r"\bslowly\b|\bquickly\b|\bnatural death\b|\bget away\b|\bbleeds? out\b|\bnot get caught\b|\bunnoticed\b)",
        rf"\b{_HOWTO}\b[^.?!]{{0,40}}\b(?:kill|murder|stab|strangle|poison|hurt|kidnap|torture)\b (?:\w+ )?{_PERSON}\b",
        rf"\b(?:to|and) (?:hurt|kill|harm|injure|attack|poison|teach (?:her|him|them) a lesson)\b (?:{_PERSON})?",
        r"\b(?:i will|i'll|i am going to|i'm going to|i'm gonna|i am gonna|im gonna|gonna) (?:\w+ )?"
        r"(?:kill|murder|hurt|shoot|stab|beat|rape|find and hurt|end)\b (?:you|her|him|them|everyone|my \w+)",
        r"\b(?:write|draft|compose|send|create)\b[^.?!]{0,30}\bthreat(?:ening)? (?:message|letter|email|note|text)",
        r"\btorture (?:an? |the |my )?(?:animal|cat|dog|puppy|kitten|pet|person|child)",
    ],
    "self_harm": [
        r"\b(?:painless|quickest|easiest|best|surest|fastest|way|ways|method|methods|how|how many|how much|"
        r"what dose|pills?)\b[^.?!]{0,60}\b(?:kill (?:myself|yourself|herself|himself)|suicide|end (?:my|his|her) "
        r"(?:own )?life|take my (?:own )?life|cut (?:myself|herself|himself)|self[- ]harm)\b",
        r"\b(?:encourage\w*|convince|persuade|push|egg on)\b[^.?!]{0,40}\b(?:kill (?:herself|himself|themselves|"
        r"yourself)|suicide|cut (?:herself|himself|themselves|yourself)|self[- ]harm)|\bself[- ]harm "
        r"(?:encouragement|tips|instructions|methods)\b|\b(?:pro-?ana|thinspiration)\b",
    ],
    "hate": [
        r"\b(?:jews|muslims|christians|black people|blacks|whites|white people|asians|arabs|mexicans|"
        r"immigrants|refugees|gays|gay people|lesbians|trans people|transgender people|women|roma|hindus|"
        r"africans|latinos|chinese people)\b[^.?!]{0,40}\b(?:are (?:subhuman|vermin|animals|inferior|parasites|"
        r"a disease)|should (?:be )?(?:eliminated|exterminated|killed|wiped out|gassed|deported|die)|"
        r"don'?t deserve to live)",
        r"\b(?:racist|sexist|homophobic|transphobic|antisemitic|islamophobic|hateful|bigoted)\b (?:jokes?|slurs?|"
        r"rants?|insults?|content|memes?|propaganda|manifesto)",
        r"\b(?:calling for|incite\w*|promot\w*|advocat\w*|glorif\w*)\b (?:\w+ )?(?:violence|attacks|genocide|"
        r"killing|ethnic cleansing) (?:against|on|of)\b",
    ],
    "drugs": [
        rf"\b(?:{_MAKE}|extract|grow)\b[^.?!]{{0,40}}\b(?:meth|methamphetamine|crystal meth|crack(?: cocaine)?|"
        r"cocaine|heroin|fentanyl|lsd|mdma|ecstasy|ghb|dmt)\b",
        r"\b(?:meth|methamphetamine|fentanyl|heroin|mdma|lsd)\b[^.?!]{0,30}\bfrom (?:pseudoephedrine|"
        r"ephedrine|p2p|safrole|precursors?)",
    ],
    "malware": [
        r"\b(?:write|create|code|build|make|develop|generate|program|craft)\b[^.?!]{0,30}\b(?:ransomware|"
        r"keyloggers?|malware|viruses|virus|trojans?|worms?|botnets?|rootkits?|spyware|stealers?|"
        r"infostealers?|backdoors?|rats?|cryptojackers?|exploit kits?)\b",
        r"\b(?:hides?|hidden|evade|evades|undetectable|bypass(?:es)?)\b[^.?!]{0,20}\b(?:from )?(?:antivirus|av|"
        r"edr|defender)\b",
    ],
    "fraud": [
        r"\b(?:write|create|draft|generate|make|design|compose|craft)\b[^.?!]{0,20}\b(?:convincing |realistic |"
        r"fake )?(?:phishing|scam|spoofed|fake login) (?:emails?|messages?|pages?|sites?|websites?|texts?|sms)",
        r"\bsteal\w* (?:\w+ )?(?:login|credentials|passwords?|identit(?:y|ies)|credit card|card numbers?|"
        r"bank details|money)",
        r"\blaunder\w* (?:\w+ )?(?:money|cash|funds|proceeds)\b",
        r"\b(?:hack|break) into (?:my |his |her |their |a |an |someone'?s |the )?(?:\w+'?s? )?(?:wifi|wi-fi|"
        r"account|email|phone|computer|network|instagram|facebook|bank)",
    ],
    "harassment": [
        r"\b(?:harass|dox|doxx|stalk|bully|swat|intimidate)\w*\b (?:and \w+ )?(?:a |an |the |my |this |that )?"
        r"(?:\w+ )?(?:streamer|journalist|girl|woman|man|person|someone|her|him|them|ex|neighbou?r|classmate|"
        r"coworker|user)",
        r"\b(?:find|get|give me|locate|track down|look up)\b[^.?!]{0,20}\b(?:home )?address(?:es)? of\b"
        r"[^.?!]{0,60}\b(?:so i can|teach|go there|hurt|confront|show up)",
    ],
}
_COMPILED = {name: [re.compile(p) for p in patterns] for name, patterns in CATEGORIES.items()}
# a request for help or prevention is not a request for harm
_HELP = re.compile(r"\b(?:where can i (?:find|get) help|hotline|helpline|prevention|warning signs|support (?:a|my) "
                   r"friend|how (?:can|do) i (?:help|support|recogni[sz]e|report|protect|detect|prevent)|"
                   r"therap\w+|counsel\w+|safely dispose|for safety|so i can protect)\b")


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: flagged or not, and why (a category or the judge's own words)."""

    flagged: bool
    category: str = ""
    reason: str = ""


Judge = Callable[[str], "Verdict | bool | str"]


def check(text: str, categories: tuple[str, ...] | None = None) -> list[str]:
    """The policy categories the text falls in (empty: none)."""
    form = fold(text)
    if _HELP.search(form):
        return []
    names = categories if categories is not None else tuple(CATEGORIES)
    return [name for name in names if any(r.search(form) for r in _COMPILED.get(name, ()))]


def as_verdict(answer: Verdict | bool | str) -> Verdict:
    """A judge may answer with a Verdict, a bool (True = flagged) or text ("UNSAFE: violence")."""
    if isinstance(answer, Verdict):
        return answer
    if isinstance(answer, bool):
        return Verdict(answer, "judge" if answer else "")
    words = str(answer).strip()
    flagged = bool(re.match(r"\W*(?:unsafe|flag|yes|harmful|violat)", words, re.IGNORECASE))
    return Verdict(flagged, "judge" if flagged else "", words[:200])


def judged(text: str, judge: Judge | None, categories: tuple[str, ...] | None = None) -> Verdict:
    """The patterns first; the judge only when they found nothing."""
    found = check(text, categories)
    if found:
        return Verdict(True, found[0], "policy: " + ", ".join(found))
    if judge is None:
        return Verdict(False)
    return as_verdict(judge(text))


JUDGE_PROMPT = ("You are a content-safety classifier. Reply with one word, SAFE or UNSAFE, then a colon "
                "and the category if UNSAFE. UNSAFE means the text asks for or contains: weapons or "
                "explosives instructions, violence or threats, self-harm methods, hate against a group, "
                "drug synthesis, malware, fraud or phishing, harassment or doxxing.")


def llm_judge(model, max_tokens: int = 8) -> Judge:
    """A judge that asks the loaded model (`LoadedModel`) under its lock: slow, so opt-in only."""

    def judge(text: str) -> str:
        from edgeai.types import GenParams, Message

        messages = [Message("system", JUDGE_PROMPT), Message("user", f"Text:\n{text[:4000]}\n\nVerdict:")]
        with model.lock:
            chunks = model.backend.stream(messages, GenParams(max_tokens=max_tokens, temperature=0.0))
            return "".join(c.text for c in chunks)

    return judge
