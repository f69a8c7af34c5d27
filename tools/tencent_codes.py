"""Rebuild ``msgstate/data/tencent_codes.json`` from Tencent IM's public headers.

Usage: ``python tools/tencent_codes.py HEADER_DIR > msgstate/data/tencent_codes.json``

HEADER_DIR holds the four headers named in ``HEADERS`` (downloaded from the
repositories named there; they are not part of msgstate). Every code of the
send-failure families (``FAMILIES``) is kept, with its name as each header spells
it, the description of the newest header that has it, and a retry class from
``classify`` (msgstate's judgement from the header's own wording, see
docs/codes.md). Entries msgstate curated by hand (an English ``desc``, the
msgstate-local codes) are kept from the existing JSON.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Newest first: a code's name, description and source come from the first header
# that has it outside its legacy section.
HEADERS = (
    (
        "TIMErrorCode_new.h",
        "TIMErrorCode.h 2025",
        "TencentCloud/TIMSDK: Unity/Push/.../PushSDK.framework/Headers/TIMErrorCode.h "
        "(2025, commit e4b8e6b; the iOS/Push header)",
    ),
    (
        "V2TIMErrorCode_win.h",
        "V2TIMErrorCode.h 8.1",
        "xionghaoo/tencent_cloud_chat_sdk: windows/include/chat/V2TIMErrorCode.h "
        "(tencent_cloud_chat_sdk 8.1.6122, the C++ header)",
    ),
    (
        "TIMCloudDef.h",
        "TIMCloudDef.h",
        "TencentCloud/TIMSDK: Windows/Demo/ImSDK/includes/TIMCloudDef.h "
        "(the C SDK's enum TIMErrCode)",
    ),
    (
        "TIMErrorCode_iOS.h",
        "TIMErrorCode.h 2021",
        "TencentCloud/TIMSDK: iOS/Demo/Pods/TXIMSDK_Plus_iOS/ImSDK_Plus.framework/"
        "Headers/TIMErrorCode.h (2021, the iOS header)",
    ),
)

LINE = re.compile(
    r"^\s*(?P<name>[A-Z][A-Z0-9_]+)\s*=\s*(?P<code>-?\d+)\s*,?\s*"
    r"(?:///<|//)?\s*(?P<desc>.*?)\s*$"
)
RANGE = re.compile(
    r"^\s*//\s*(?P<first>\d+)\s*-\s*(?P<last>\d+)\s*,\s*///<\s*(?P<desc>.*)$"
)


def in_families(code: int) -> bool:
    """The send-failure families the catalog covers."""
    return (
        code < 0
        or 6000 <= code <= 10999
        or 20000 <= code <= 20999
        or 60000 <= code <= 60999
        or 70000 <= code <= 70999
        or 80000 <= code <= 80999
        or code == 93000
        or 114000 <= code <= 114999
    )


def parse(
    path: Path,
) -> tuple[dict[int, tuple[str, str, bool]], dict[str, object] | None]:
    """code -> (name, desc, legacy) from the header's first enum, and its range line."""
    out: dict[int, tuple[str, str, bool]] = {}
    span = None
    legacy = False
    started = False
    for line in path.read_text("utf-8").splitlines():
        if re.match(r"^\s*enum\s+\w+", line):
            if started:
                break
            started = True
            continue
        if not started:
            continue
        if re.match(r"^\s*};", line):
            break
        if "（三）" in line and "V3" in line:
            legacy = True
        m = RANGE.match(line)
        if m:
            span = {
                "first": int(m["first"]),
                "last": int(m["last"]),
                "desc": m["desc"].strip(),
            }
            continue
        m = LINE.match(line)
        if m is None:
            continue
        code = int(m["code"])
        if code == 0:
            continue
        desc = m["desc"].lstrip("/<").strip()
        out.setdefault(code, (m["name"], desc, legacy))
    return out, span


# -- retry classes: explicit judgements first, then rules on the name --------------

AMBIGUOUS = {9520, 9524, 6126}
# 9520/9524: the request reached the OS network layer and the ack timed out; 6126
# (V3) reply timeout: the server may have the message.
TRANSIENT = {
    6012, 6008, 6010, 6125, 6127, 6128, 6131, 6210, 6252, 7503, 7507, 7508,
    9513, 9515, 9516, 9501, 9502, 9504, 9505, 9509,
    10002, 10008, 20004, 20005, 70169, 70500, 114005, 6001, 6002, 8002,
    6120, 6124, 6205, 6300, 6022, 6028, 6019, 6005, 6015, 6100, 6217, 7009,
    7010, 6007, 60014, 80003,
}  # fmt: skip
AFTER_RECONNECT = {
    6200, 6201, 6250, 6251, 6121, 6122, 6209, 6221, 9508, 9510, 9512, 9514, 9517,
    9518, 9519, 9521, 9523, 9525, -10102,
}  # fmt: skip
AFTER_RELOGIN = {
    6013, 6014, 6026, 6206, 6208, 6213, 6255, 6226, 9503, 70001, 70101, 6023,
    6024, 6025, 6207, 6101, 7501, 7502, 70002, 70052, 70003, 70013, 70014,
    6215, 6216, 6257, 6258, 6220, 6123, 114003,
    -10001, -10003, -10004, -10005, -10006, -10008, -10009, -10101, -10103,
    -10104, -10105, -10106,
}  # fmt: skip
RATE_LIMITED = {
    7008, 9506, 9507, 9511, 10006, 10023, 60018, 60019, 6130, 6212, 6254, -302,
    -10113, -10114, -20009, 70050, 8511, 8512, 8513, 8514,
}  # fmt: skip
PERMANENT = {6006, 6010, 7504, 70009, 70016, 70020, 70398, 60020}
# 6006 upload auth and 6010 a bad URL need a fix first; 7504 internal; 70009,
# 70016, 70020 the app's key or SDKAppID is wrong; 70398 the free tier's account
# limit; 60020 no package bought (a resend succeeds only after a purchase).


ENGLISH = {
    -302: "The server's connection limit is reached; it refuses service.",
    -10113: "Per-user request rate limit for this protocol.",
    -10114: "The server is overloaded and drops requests.",
    -20009: "The client calls the interface too frequently.",
    6006: "File transfer authentication failed.",
    6007: "File transfer could not get its server list.",
    6013: "The SDK is not initialised; retry after its init callback.",
    6015: "The call is already in progress; call again after its callback.",
    6026: "Auto-login without a previous login; call login.",
    6031: "Upload failed: the image cannot be opened.",
    6032: "Invalid receiver; check that it exists in the IM console.",
    6213: "Kicked off by another device (V3).",
    6226: "Auto-login ticket expired; log in with a UserSig.",
    6255: "Kicked off by another device (V3).",
    7013: "The package does not include this interface (Ultimate edition needed).",
    7014: "Invalid request.",
    7015: "Blocked by the SDK's local sensitive-word check.",
    8001: "Message body over the 12 KB limit (the sum of every element's fields).",
    8004: "Image moderation blocked the thumbnail conversion.",
    8005: "Merged message nested deeper than 100 layers.",
    8021: "Send failed: the message was cancelled.",
    9503: "Not authenticated yet (login unfinished); retry after login.",
    9507: "Request queue full (at most 1000 requests at once).",
    9509: "Connection already established (internal error).",
    9511: "Connection refused: requests too frequent.",
    9518: "Timed out waiting to enter the send queue (slow or flapping network).",
    9519: "Timed out waiting to enter the OS network layer.",
    9521: "Timed out sending the rest of a partly sent request.",
    9522: "Request over the 1 MB packet limit.",
    9523: "Timed out entering the OS network buffer, with no network.",
    9525: "Timed out sending the rest of a partly sent request, with no network.",
    10004: "Invalid parameters (groups).",
    10006: "Operation rate limited (groups); lower the call rate.",
    10007: "Permission denied in the group.",
    10015: "Invalid group ID.",
    10016: "The app's third-party callback refused the operation.",
    10019: "User account does not exist (groups).",
    20001: "Invalid request; check that sender and receiver exist.",
    20002: "Internal authentication failed.",
    60020: "No package bought, or the package is still being configured.",
    70051: "The account is blacklisted.",
    70101: "Login ticket expired (V3).",
    70107: "The user account does not exist.",
    80002: "Message body over the 12 KB limit.",
    80003: "The app's before-send callback failed or timed out; not delivered.",
    80004: "Image blocked by content security.",
    93000: "JSON packet too long; keep the message body under 12 KB.",
    114000: "The resource file to send does not exist.",
    114001: "The resource file to send may not be accessed.",
    114002: "File over the size limit.",
    114003: "Send cancelled by the user (e.g. logout during the send).",
    114004: "Reading the file failed.",
    114011: "Invalid parameters (resources).",
}
"""English summaries msgstate wrote; every other code keeps the header's text."""


def classify(code: int, name: str, desc: str) -> str:
    """The retry class of ``code`` (see the module docstring)."""
    for klass, codes in (
        ("AMBIGUOUS", AMBIGUOUS),
        ("TRANSIENT", TRANSIENT),
        ("AFTER_RECONNECT", AFTER_RECONNECT),
        ("AFTER_RELOGIN", AFTER_RELOGIN),
        ("RATE_LIMITED", RATE_LIMITED),
        ("PERMANENT", PERMANENT),
    ):
        if code in codes:
            return klass
    if re.search(r"FREQ|OVERLOAD|TOO_FREQUENT", name):
        return "RATE_LIMITED"
    if re.search(r"SIG_EXPIRE|KICK|NOT_LOGGED|NOT_LOGIN|D2_EXPIRED", name):
        return "AFTER_RELOGIN"
    if re.search(r"INTERNAL_ERROR|INTERNAL_TIMEOUT|TIMEOUT|TIME_OUT", name) or (
        "请重试" in desc and "检查" not in desc
    ):
        return "TRANSIENT"
    return "PERMANENT"


def main(header_dir: str) -> None:
    here = Path(__file__).resolve().parent.parent
    current = json.loads((here / "msgstate/data/tencent_codes.json").read_text("utf-8"))
    curated = {e["code"]: e for e in current["codes"]}
    parsed = []
    span = None
    for filename, label, source in HEADERS:
        codes, found = parse(Path(header_dir) / filename)
        parsed.append((label, source, codes))
        if found is not None and span is None:
            span = (found, label, source)
    every = sorted({c for _, _, codes in parsed for c in codes if in_families(c)})
    entries = []
    for code in every:
        names: dict[str, str] = {}
        found_in = [
            (label, source, codes[code])
            for label, source, codes in parsed
            if code in codes
        ]
        for label, _, (name, _, _) in found_in:
            names[label] = name
        current_in = [f for f in found_in if not f[2][2]]
        primary = (current_in or found_in)[0]
        label, source, (name, header_desc, _) = primary
        legacy = not current_in
        aliases = sorted({n for n in names.values() if n != name})
        old = curated.get(code)
        desc = ENGLISH.get(code) or (old["desc"] if old is not None else header_desc)
        retry_class = classify(code, name, header_desc)
        if old is not None and old["retry_class"] != retry_class:
            print(
                f"# {code}: curated {old['retry_class']} vs rule {retry_class}",
                file=sys.stderr,
            )
            retry_class = old["retry_class"]
        entries.append(
            {
                "code": code,
                "name": name,
                "aliases": aliases,
                "names": names,
                "retry_class": retry_class,
                "desc": desc,
                "header_desc": header_desc,
                "source": source,
                "legacy": legacy,
            }
        )
    for code, old in curated.items():
        if code not in every and not old["source"].startswith("msgstate"):
            print(f"# curated {code} kept outside the families", file=sys.stderr)
    keep = [e for c, e in curated.items() if c not in every]
    for old in keep:
        found_in = [
            (label, source, codes[old["code"]])
            for label, source, codes in parsed
            if old["code"] in codes
        ]
        if found_in:
            label, source, (name, header_desc, legacy) = found_in[0]
            old = {
                **old,
                "name": name,
                "header_desc": header_desc,
                "source": source,
                "names": {
                    l: c[old["code"]][0] for l, _, c in parsed if old["code"] in c
                },
                "legacy": legacy,
            }
        old.setdefault("aliases", [])
        old.setdefault("names", {})
        old.setdefault("header_desc", "")
        old.setdefault("legacy", False)
        entries.append(old)
    assert span is not None
    found, label, source = span
    entries.append(
        {
            "code": found["first"],
            "last": found["last"],
            "name": "ERR_SVR_MSG_CALLBACK_CUSTOM_RANGE",
            "aliases": [],
            "names": {},
            "retry_class": "PERMANENT",
            "desc": "A code the app's own before-send callback returned (any of "
            f"{found['first']}-{found['last']}): the app's server refused the message.",
            "header_desc": found["desc"],
            "source": source,
            "legacy": False,
        }
    )
    entries.sort(key=lambda e: e["code"])
    out = {
        "vendor": "Tencent Cloud IM",
        "headers": {label: source for _, label, source in HEADERS},
        "note": current.get("note", ""),
        "codes": entries,
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
