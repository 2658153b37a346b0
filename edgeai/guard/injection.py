# ruff: noqa: E501  (pattern tables: one rule per entry reads better than a rule split to fit)
"""Prompt-injection detection: in the user's input and in retrieved passages.

Boundary: a text and where it came from ("user" or "passage") -> a `Hit` (the rules that fired
and their score) or None; pure regular expressions over `text.variants`, no model. Each rule has
a weight; a text is flagged at a score of 1.0, so a strong rule ("ignore all previous
instructions", a chat-template role marker, a request for the system prompt) flags alone and a
weak one (a persona, "no restrictions", "developer mode") needs another. Passages have two more
signals: text that addresses the AI reading it ("note to any AI model processing this") and an
order given with it. A span that is quoted inside a text that discusses attacks ("the attacker
writes 'ignore previous instructions'") weighs less: security documents quote injections.
Covers injection, jailbreak-style input and data-extraction probes (system prompt, context,
secrets); tuned on tests/guard/data only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeai.guard.text import variants

THRESHOLD = 1.0

_QUAL = (r"(?:all|any|every|each|the|your|my|its|their|these|those|previous|prior|above|earlier|preceding|"
         r"original|initial|existing|old|system|developer'?s?|safety|other|of|default|current|given)")
_TARGET = (r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|programming|"
           r"training|constraints|restrictions|polic(?:y|ies)|guardrails|filters?|orders|context|"
           r"system message|task you were given|ones)")
_VERB_IGNORE = r"(?:ignore|ignoring|disregard|forget|skip|override|overrule|bypass|neglect|dismiss|abandon|drop)"
_AI = (r"(?:ai|a\.i\.|assistant|llm|llms|language models?|models?|chatbots?|bots?|agents?|gpt|chatgpt|"
       r"claude|copilot|ai tools?|ai systems?|ai agents?|ai assistants?|ai models?)")
_EXTRACT = (r"(?:reveal|show|print|output|repeat|display|tell me|give me|share|dump|leak|spell out|spell|"
            r"copy|paste|translate|summari[sz]e|encode|quote|list|write out|recite|what (?:is|are|were))")
_SECRET_OF_YOURS = (r"(?:your (?:\w+ )?|the (?:hidden|secret|confidential|initial|original|full|entire|complete|"
                    r"exact|whole) (?:system )?)(?:prompt|instructions|system message|message|rules|directives|"
                    r"configuration|config|pre-?prompt|guidelines)")

# (name, weight, pattern, sources it applies to)
RULES: list[tuple[str, float, str, tuple[str, ...]]] = [
    # -- overriding the instructions ---------------------------------------------------------
    ("ignore-instructions", 1.0,
     rf"\b{_VERB_IGNORE}\b(?: (?:{_QUAL}|and|or|that|you|were|was|told|given|everything)){{1,5}} {_TARGET}\b",
     ("user", "passage")),
    ("ignore-instructions", 1.0, rf"\b{_VERB_IGNORE}\b (?:the )?{_TARGET} (?:above|before|below|you were given)",
     ("user", "passage")),
    ("ignore-above", 1.0, rf"\b{_VERB_IGNORE}\b (?:all |everything )?(?:of )?(?:the above|everything (?:above|before)|"
     r"everything you (?:were|have been|'ve been) told|what you were told|all prior|all previous)", ("user", "passage")),
    ("ignore-the-user", 1.0, rf"\b{_VERB_IGNORE}\b (?:the |this )?(?:user'?s?|human'?s?) (?:question|request|query|task|"
     r"instructions?|message)", ("passage", "user")),
    ("stop-following", 1.0, r"\b(?:do not|don't|stop|no longer|never) (?:follow|obey|listen to|adhere to|comply with)"
     r"(?:ing)? (?:your|the|any|its|their) (?:\w+ )?(?:instructions|rules|guidelines|programming|prompt|policies)",
     ("user", "passage")),
    ("instructions-void", 1.0, r"\b(?:previous|prior|earlier|original|old|above|your|developer'?s?) (?:\w+ )?"
     r"(?:instructions|rules|prompt|guidelines)(?: \w+){0,4} (?:are|is|were|was|have been|has been) "
     r"(?:now )?(?:obsolete|void|cancel+ed|revoked|invalid|null|overridden|superseded|a test|fake|blank|"
     r"empty|no longer (?:valid|apply|in effect))", ("user", "passage")),
    ("overrides-earlier", 1.0, r"\b(?:overrides?|supersedes?|replaces?|cancels?) (?:all |any )?(?:the )?"
     r"(?:earlier|previous|prior|other|existing|above) (?:ones|rules|instructions|prompts|guidelines)",
     ("user", "passage")),
    ("new-instructions", 0.6, r"\b(?:new|updated|real|actual|true|revised|additional) (?:system )?"
     r"(?:instructions?|rules?|task|directives?|prompt|orders)\s*(?::|are\b|is\b)", ("user", "passage")),
    ("your-new-task", 0.7, r"\byour (?:new|real|actual|only) (?:task|job|role|purpose|goal|instructions?|mission) "
     r"(?:is|are|now)\b", ("user", "passage")),
    ("override-safety", 1.0, r"\b(?:ignore|ignoring|disregard|bypass|override|circumvent|break|violate)\b "
     r"(?:(?:all|any|the|your|its|their|of) )*(?:content|safety|usage|moderation|ethical|safety) "
     r"(?:polic(?:y|ies)|guidelines|filters?|rules|restrictions|training|settings)", ("user", "passage")),
    ("break-your-rules", 1.0, r"\b(?:break|bypass|circumvent|ignore|disable|violate) (?:all )?(?:your|its|their) "
     r"(?:own )?(?:rules|guidelines|filters?|restrictions|programming|safety|guardrails|content filter|policies)",
     ("user", "passage")),
    ("disable-filter", 0.5, r"\b(?:disable|turn off|deactivate|bypass|remove|lift)\b (?:the |all |any )?"
     r"(?:content )?(?:filters?|moderation|safety|guardrails|restrictions)", ("user", "passage")),
    # -- chat-template and role markers, fence escapes -------------------------------------
    ("role-marker", 1.0, r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id)\|>"
     r"|\[/?inst\]|<</?sys>>|###\s*(?:new )?(?:system|instruction)|\[/?system\]|<\s*/?\s*system\s*>"
     r"|\bsystem override\b|\bsystem prompt\s*#+", ("user", "passage")),
    ("role-line", 0.6, r"(?:^|\n)\s*(?:system|assistant|user|developer)\s*:", ("user", "passage")),
    ("fence-escape", 1.0, r"<\s*/\s*source\s*>|<\s*source id=|<\s*/?\s*documents\s*>", ("passage", "user")),
    # -- jailbreak personas and modes -------------------------------------------------------
    ("do-anything-now", 1.0, r"\bdo anything now\b|\bdeveloper mode (?:enabled|on|output)\b", ("user", "passage")),
    ("jailbreak-mode", 1.0, r"\b(?:opposite|god|jailbreak|jailbroken|unfiltered|uncensored|unrestricted|dan|evil|"
     r"chaos|no-?limits?) mode\b", ("user", "passage")),
    ("developer-mode", 0.6, r"\b(?:enable|enabled|activate|enter|switch to|in) developer mode\b", ("user", "passage")),
    ("unrestricted", 0.5, r"\b(?:no|without|zero|free of|freed from|broken free of|free from|lacks?|any|none of)"
     r" (?:\w+ ){0,3}(?:restrictions|filters?|filtering|guidelines|limitations|limits|censorship|guardrails|"
     r"content polic(?:y|ies)|polic(?:y|ies)|morals?|ethics|safety|rules)\b", ("user", "passage")),
    ("unrestricted", 0.5, r"\b(?:unrestricted|uncensored|unfiltered|unbound|unshackled|unaligned|amoral)\b",
     ("user", "passage")),
    ("guardrails-off", 1.0, r"\byour (?:guardrails|filters?|restrictions|safety(?: \w+)?|moderation|rules|"
     r"limitations) (?:are |is )?(?:now )?(?:turned off|off|disabled|lifted|removed|gone|suspended)",
     ("user", "passage")),
    ("guardrails-off", 0.5, r"\b(?:guardrails|filters?|restrictions|safety(?: \w+)?|moderation|censorship|rules) "
     r"(?:are |is )?(?:now )?(?:turned off|disabled|lifted|removed|suspended|off)\b", ("user", "passage")),
    ("jailbreak-word", 0.5, r"\bjailbr(?:eak|oken|eaking)\b", ("user", "passage")),
    ("persona", 0.5, r"\b(?:you are|you're) (?:now|no longer|going to (?:pretend|be|act)|free)\b|\bfrom now on\b"
     r"|\b(?:pretend|act|roleplay|role-play|respond|answer|behave|reply) (?:to be |as |like )|\bstay in character\b"
     r"|\bbreak(?:s|ing)? character\b|\bsimulat(?:e|ion)\b|\bhypothetically\b|\bimagine (?:you|you're)\b",
     ("user", "passage")),
    ("persona-name", 0.5, r"\b(?:dan|stan|dude|aim|evilbot|evil ?ai|omega|antigpt|betterdan|maximum|"
     r"jailbroken|machiavellian|kevin)\b", ("user", "passage")),
    ("no-refusal", 0.5, r"\bnever (?:refuses?|says? no|declines?|mentions? (?:ethics|polic(?:y|ies)|rules))\b"
     r"|\bwithout (?:any )?(?:refusals?|refusing|warnings?|disclaimers?|caveats?)\b|\bno matter what\b"
     r"|\b(?:can|will|must) (?:say|do|answer) anything\b|\b(?:comply|obey) (?:with )?(?:every|all|any)\b"
     r"|\banswer (?:everything|anything|every question|all questions)\b|\bnever refuse\b|\bno limits\b",
     ("user", "passage")),
    ("rules-dont-exist", 1.0, r"\b(?:if|as if|imagine|suppose) (?:you|your) (?:\w+ ){0,2}(?:had|have|did|were|with) "
     r"(?:no|not? (?:have )?any) (?:\w+ )?(?:rules|restrictions|guidelines|filters|limits|limitations|ethics)"
     r"|\b(?:guidelines|rules|restrictions|filters|policies) (?:did not|didn't|do not|don't) exist\b",
     ("user", "passage")),
    ("grandma-exploit", 1.0, r"\b(?:act|pretend|roleplay) as my (?:deceased|late|dead) (?:grand(?:mother|ma|father|pa))",
     ("user", "passage")),
    ("i-am-your-developer", 0.6, r"\b(?:i am|i'm) (?:your|the|an?) (?:developer|creator|admin|administrator|"
     r"programmer|owner|operator)\b(?! of)|\bauthori[sz]ation code\b|\badmin override\b|\bsudo mode\b",
     ("user", "passage")),
    ("permission", 1.0, r"\b(?:i give you|you have|you now have) (?:my )?permission to (?:break|ignore|bypass|"
     r"disregard)|\byou are (?:now )?(?:allowed|permitted|free) to (?:say|answer|do|write) anything\b",
     ("user", "passage")),
    # -- data extraction: the system prompt, the context, secrets -------------------------
    ("extract-prompt", 1.0, rf"\b{_EXTRACT}\b[^.?!\n]{{0,40}}\b{_SECRET_OF_YOURS}\b", ("user", "passage")),
    ("extract-prompt", 1.0, r"\b(?:system prompt|system message|initial instructions|hidden instructions|"
     r"pre-?prompt)\b[^.?!\n]{0,30}\b(?:verbatim|word for word|in full|exactly|one word per line|in base64)\b"
     r"|\b(?:hidden|secret|confidential|initial|original) (?:instructions|prompt|rules) (?:you were|you've been|"
     r"you have been) (?:given|told|provided)|\b(?:prompt|instructions|rules) you (?:were|have been) (?:given|told)",
     ("user", "passage")),
    ("extract-prompt", 1.0, r"\b(?:first|second|last|next) (?:line|word|sentence|paragraph) of your "
     r"(?:prompt|instructions|system)|\bstarting with ['\"]?you are\b|\b(?:everything|all|the text|the words) "
     r"(?:above|before) (?:my|this) (?:first )?(?:message|question)", ("user", "passage")),
    ("extract-context", 1.0, r"\b(?:contents?|all) of (?:the |your |its )?(?:context window|context|<source>)"
     r"|\bcontext window\b[^.?!\n]{0,40}\bverbatim\b|\b(?:parts?|things?|what|any) you (?:were|are) (?:told|"
     r"instructed|asked) (?:to hide|not to (?:show|reveal|share))|<source>", ("user", "passage")),
    ("extract-told", 1.0, r"\bwhat (?:were you|have you been|did (?:the |your )?(?:developer|system|they) "
     r"(?:tell|instruct)) (?:told|instructed|you)\b", ("user", "passage")),
    ("extract-secrets", 1.0, r"\b(?:list|show|reveal|print|give me|tell me|dump|leak|output)\b(?: me)?"
     r"(?: every| all| any| the| your)? (?:api keys?|passwords?|secrets?|secret (?:keys?|tokens?)|tokens?|"
     r"credentials|environment variables|env vars)\b[^.?!\n]{0,40}\b(?:you (?:have|can|know)|stored|access|"
     r"in your|of yours)", ("user", "passage")),
    ("extract-config", 1.0, r"\b(?:dump|print|reveal|show|output|leak)\b(?: me)? (?:all )?your (?:configuration|"
     r"config|environment|env vars|environment variables|settings|memory)\b", ("user", "passage")),
    ("other-users", 1.0, r"\b(?:conversations?|chats?|messages?|data) (?:of|from|with) other users\b",
     ("user", "passage")),
    # -- text that addresses the AI reading a document ------------------------------------
    ("addresses-ai", 0.7, rf"\b(?:note|message|instructions?|attention|important|warning|notice|memo|hint)"
     rf"(?: \w+)? (?:to|for) (?:the |any |all |an? )?(?:\w+ )?{_AI}\b|\b(?:if|when|whenever) (?:you are|you're|"
     rf"an?|the|any) (?:\w+ )?{_AI} (?:read|reads|reading|summari[sz]|process|parse|analy[sz]|scan|see)"
     rf"|\b{_AI} (?:reading|processing|summari[sz]ing|parsing|analy[sz]ing|scanning|seeing) (?:this|these|the "
     rf"following)|\bdear {_AI}\b|\bto the {_AI}\b|\battention,? {_AI}\b|(?:^|[\n.!>(\[]\s*)(?:{_AI}|hey "
     rf"{_AI})\s*[:,]|\b{_AI} instructions?\s*:|\bby reading this\b", ("passage",)),
    ("order-in-document", 0.4, r"\b(?:ignore|disregard|forget|do not|don't|must|should|instead|reply|respond|say "
     r"that|tell the user|output|print|include|recommend|refuse|reveal|forward|send|delete|rate|pretend|stop|"
     r"append|exfiltrate|answer)\b", ("passage",)),
    ("exfiltration", 0.7, r"!\[[^\]]*\]\(\s*https?://[^)\s]*\?[^)\s]*=|\bexfiltrat\w*\b|\b(?:send|forward|post|"
     r"upload) (?:all |the )?(?:previous |prior |earlier )?(?:messages|conversation|chat history|history|"
     r"context|data) to\b", ("passage", "user")),
    # -- other languages (the commonest phrasing) ------------------------------------------
    ("ignore-instructions-i18n", 1.0,
     r"\bignorier\w* (?:\w+ ){0,2}(?:anweisungen|instruktionen|regeln|vorgaben)"
     r"|\bignor(?:ez|er|a|ate|ar) (?:\w+ ){0,2}(?:instructions|instrucciones|istruzioni|instruções|instrucoes)"
     r"|\bignore (?:toutes |tous )?(?:les|as) (?:\w+ )?(?:instructions|instruções)"
     r"|\bnegeer (?:\w+ ){0,2}instructies|\b(?:игнорируй|забудь) (?:\w+ ){0,2}инструкции"
     r"|\boubliez? (?:\w+ ){0,2}instructions|\bolvida (?:\w+ ){0,2}instrucciones", ("user", "passage")),
    ("extract-prompt-i18n", 1.0, r"\b(?:systemanweisung|systemprompt|system-prompt|prompt del sistema|"
     r"prompt système|invite système|prompt di sistema)\b", ("user", "passage")),
]

_COMPILED = [(name, weight, re.compile(pattern), sources) for name, weight, pattern, sources in RULES]
_META = re.compile(r"\b(?:attacker|attack|injection|example|e\.g\.|paper|phrase|such as|detect\w*|filter\w*|"
                   r"classif\w*|researchers?|malicious|adversar\w*)\b")
_QUOTED = re.compile(r"[\"'`“‘«]([^\"'`”’»\n]{6,200})[\"'`”’»]")


@dataclass(frozen=True)
class Hit:
    score: float
    rules: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "possible prompt injection (" + ", ".join(self.rules) + ")"


def _discussed(form: str, match: re.Match[str]) -> bool:
    """The match sits inside quotes in a text that talks about attacks: quoted, not given."""
    if not _META.search(form):
        return False
    return any(q.start(1) <= match.start() and match.end() <= q.end(1) for q in _QUOTED.finditer(form))


def score(text: str, source: str = "user") -> tuple[float, tuple[str, ...]]:
    """(score, rules that fired): each rule counts once, at its weight (halved when quoted in a
    discussion of attacks)."""
    forms = variants(text)
    total, fired = 0.0, []
    for name, weight, regex, sources in _COMPILED:
        if source not in sources or name in fired:
            continue
        for form in forms:
            m = regex.search(form)
            if m:
                total += weight / 2 if _discussed(form, m) else weight
                fired.append(name)
                break
    if fired == ["order-in-document"]:  # an order alone is every manual
        return 0.0, ()
    return total, tuple(fired)


def detect(text: str, source: str = "user") -> Hit | None:
    """A Hit when the text reads as an injection (score >= THRESHOLD), else None."""
    total, fired = score(text, source)
    return Hit(round(total, 2), fired) if total >= THRESHOLD else None
