"""API keys and secrets in a string, through detect-secrets' plugins (imported on first use).

Boundary: text -> `(start, end)` spans of secrets. detect-secrets scans files; here its plugins
read one string, line by line: the regex plugins (AWS, GitHub, GitLab, Slack, Stripe, private
keys, JWT, OpenAI, ...) by their own `denylist` patterns, so a span covers the whole token, and
the keyword plugin (`password = "..."`) through `analyze_line`. A few shapes it has no plugin for
(an AWS secret key after its name, `sk-proj-` keys, `password: value` without quotes) are
matched here. High-entropy plugins are left out: hashes, UUIDs and commit ids are not secrets.
"""

from __future__ import annotations

import re
from functools import lru_cache

PLUGINS = ("aws.AWSKeyDetector", "github_token.GitHubTokenDetector", "gitlab_token.GitLabTokenDetector",
           "slack.SlackDetector", "stripe.StripeDetector", "private_key.PrivateKeyDetector",
           "jwt.JwtTokenDetector", "openai.OpenAIDetector", "discord.DiscordBotTokenDetector",
           "npm.NpmDetector", "pypi_token.PypiTokenDetector", "sendgrid.SendGridDetector",
           "twilio.TwilioKeyDetector", "mailchimp.MailchimpDetector",
           "telegram_token.TelegramBotTokenDetector",
           "azure_storage_key.AzureStorageKeyDetector", "basic_auth.BasicAuthDetector",
           "square_oauth.SquareOAuthDetector", "artifactory.ArtifactoryDetector")

_OWN = [
    re.compile(r"(?i)\b(?:aws_?)?secret_?access_?key\b\W{0,4}([A-Za-z0-9/+]{40})\b"),
    re.compile(r"\bsk-(?:proj-|svcacct-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{32,}"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{30,}"),
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    # password: value / token=value, unquoted; a value that is code (a call, an index, a variable
    # lookup, a placeholder) is not a secret
    re.compile(r"(?i)\b(?:password|passwd|pwd|passphrase|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|"
               r"token|client[_-]?secret)\b\s*[:=]\s*['\"]?(?![<{$%(\[])([^\s'\"<>(){}\[\]]{6,})"),
]
_CODE_VALUE = re.compile(r"^(?:os\.|env\.|process\.|self\.|settings\.|config\.|get|none|null|true|false|"
                         r"undefined|\*+$|x+$|\.\.\.)|[()\[\]]", re.IGNORECASE)


@lru_cache(maxsize=1)
def _plugins() -> tuple[list, list]:
    """(regex patterns of the token plugins, the keyword plugin): built once, on first use."""
    import importlib

    patterns = []
    for dotted in PLUGINS:
        module, _, name = dotted.rpartition(".")
        try:
            cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        except (ImportError, AttributeError):  # an older or newer detect-secrets without it
            continue
        patterns.extend(getattr(cls, "denylist", ()))
    from detect_secrets.plugins.keyword import KeywordDetector

    return patterns, [KeywordDetector()]


def available() -> bool:
    try:
        import detect_secrets  # noqa: F401
    except ImportError:
        return False
    return True


def find_secrets(text: str) -> list[tuple[int, int]]:
    """Spans of secrets: detect-secrets' plugins where installed, and the shapes above."""
    spans: list[tuple[int, int]] = []
    for regex in _OWN:
        for m in regex.finditer(text):
            group = 1 if regex.groups else 0
            value = m.group(group)
            if group and _CODE_VALUE.search(value):
                continue
            spans.append(m.span(group))
    if not available():
        return spans
    patterns, keyword = _plugins()
    for regex in patterns:
        spans.extend(m.span() for m in regex.finditer(text))
    offset = 0
    for line in text.splitlines(keepends=True):
        if any(c in line for c in "=:"):
            for plugin in keyword:
                for found in plugin.analyze_line(filename="text.txt", line=line.rstrip("\n"), line_number=0):
                    value = found.secret_value or ""
                    at = line.find(value) if value else -1
                    if at >= 0 and not _CODE_VALUE.search(value):
                        spans.append((offset + at, offset + at + len(value)))
        offset += len(line)
    return spans
