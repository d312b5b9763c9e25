"""Deterministic text and identifier helpers for the sandbox world.

Everything here is vectorised so that building 100k accounts (and ~1M events a day) never loops in Python per
record, except for the few string formattings that are per account or per contact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_HEX = b"0123456789abcdef"
# byte value -> its two lowercase hex characters, as one little-endian uint16 ("ab" -> b'a' | b'b' << 8)
_HEX_PAIRS = np.array([_HEX[b >> 4] | (_HEX[b & 15] << 8) for b in range(256)], dtype="<u2")

NAME_PREFIXES = (
    "North",
    "Blue",
    "Iron",
    "Bright",
    "Silver",
    "Red",
    "Clear",
    "Summit",
    "Pioneer",
    "Atlas",
    "Harbor",
    "Cedar",
    "Granite",
    "Swift",
    "Golden",
    "Maple",
    "Quantum",
    "Vector",
    "Lumen",
    "Nova",
    "Orbit",
    "Polar",
    "Prairie",
    "Crescent",
    "Falcon",
    "Willow",
    "Copper",
    "Sterling",
    "Aspen",
    "Beacon",
    "Crystal",
    "Echo",
    "Evergreen",
    "Frontier",
    "Horizon",
    "Juniper",
    "Keystone",
    "Meridian",
    "Oak",
    "Pinnacle",
)
NAME_CORES = (
    "wind",
    "stone",
    "path",
    "field",
    "bridge",
    "point",
    "wave",
    "gate",
    "leaf",
    "ridge",
    "light",
    "brook",
    "crest",
    "forge",
    "line",
    "mark",
    "peak",
    "shore",
    "spark",
    "view",
    "works",
    "vale",
    "port",
    "grid",
    "stream",
    "hill",
    "core",
    "wise",
    "scale",
    "mint",
)
# sector word -> industry (HubSpot-style enumeration values)
SECTORS = (
    ("Analytics", "COMPUTER_SOFTWARE"),
    ("Logistics", "LOGISTICS_AND_SUPPLY_CHAIN"),
    ("Health", "HOSPITAL_HEALTH_CARE"),
    ("Systems", "INFORMATION_TECHNOLOGY_AND_SERVICES"),
    ("Labs", "BIOTECHNOLOGY"),
    ("Foods", "FOOD_PRODUCTION"),
    ("Robotics", "MACHINERY"),
    ("Capital", "FINANCIAL_SERVICES"),
    ("Media", "MARKETING_AND_ADVERTISING"),
    ("Energy", "RENEWABLES_ENVIRONMENT"),
    ("Retail", "RETAIL"),
    ("Insurance", "INSURANCE"),
    ("Learning", "E_LEARNING"),
    ("Software", "COMPUTER_SOFTWARE"),
    ("Manufacturing", "INDUSTRIAL_AUTOMATION"),
    ("Travel", "LEISURE_TRAVEL_TOURISM"),
    ("Legal", "LEGAL_SERVICES"),
    ("Consulting", "MANAGEMENT_CONSULTING"),
    ("Networks", "TELECOMMUNICATIONS"),
    ("Properties", "REAL_ESTATE"),
)
LEGAL_FORMS = ("Inc.", "LLC", "GmbH", "Ltd", "Co.", "Group", "AG", "SAS")

FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Theodore",
    "Emily",
    "Jack",
    "Ella",
    "Levi",
    "Elizabeth",
    "Alexander",
    "Camila",
    "Jackson",
    "Luna",
    "Mateo",
    "Sofia",
    "Daniel",
    "Avery",
    "Michael",
    "Mila",
    "Mason",
    "Aria",
    "Sebastian",
    "Scarlett",
    "Ethan",
    "Penelope",
    "Logan",
    "Layla",
    "Owen",
    "Chloe",
    "Samuel",
    "Victoria",
    "Jacob",
    "Madison",
    "Asher",
    "Eleanor",
    "Aiden",
    "Grace",
    "John",
    "Nora",
    "Joseph",
    "Riley",
    "Wyatt",
    "Zoey",
    "David",
    "Hannah",
    "Leo",
    "Hazel",
    "Luke",
    "Lily",
    "Julian",
    "Ellie",
    "Hudson",
    "Violet",
    "Grayson",
    "Lillian",
    "Matthew",
    "Zoe",
    "Ezra",
    "Stella",
    "Gabriel",
    "Aurora",
    "Carter",
    "Natalie",
    "Isaac",
    "Emilia",
    "Jayden",
    "Everly",
    "Luca",
    "Leah",
    "Anthony",
    "Aubrey",
    "Dylan",
    "Willow",
    "Lincoln",
    "Priya",
    "Arjun",
    "Mei",
    "Hiroshi",
    "Fatima",
    "Omar",
    "Ingrid",
    "Lars",
    "Chiara",
    "Mateus",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Gomez",
    "Phillips",
    "Evans",
    "Turner",
    "Diaz",
    "Parker",
    "Cruz",
    "Edwards",
    "Collins",
    "Reyes",
    "Stewart",
    "Morris",
    "Morales",
    "Murphy",
    "Cook",
    "Rogers",
    "Gutierrez",
    "Ortiz",
    "Morgan",
    "Cooper",
    "Peterson",
    "Bailey",
    "Reed",
    "Kelly",
    "Howard",
    "Ramos",
    "Kim",
    "Cox",
    "Ward",
    "Richardson",
    "Watson",
    "Brooks",
    "Chavez",
    "Wood",
    "James",
    "Bennett",
    "Gray",
    "Mendoza",
    "Ruiz",
    "Hughes",
    "Price",
    "Alvarez",
    "Castillo",
    "Sanders",
    "Patel",
    "Myers",
    "Long",
    "Ross",
    "Foster",
    "Schmidt",
    "Müller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Novak",
    "Larsen",
    "Dubois",
)

# role -> ((job title, department), ...)
TITLES_BY_ROLE: dict[str, tuple[tuple[str, str], ...]] = {
    "executive_sponsor": (
        ("VP Customer Operations", "operations"),
        ("Chief Operating Officer", "executive"),
        ("Chief Financial Officer", "finance"),
        ("VP Sales", "sales"),
        ("Head of Revenue Operations", "operations"),
        ("Chief Technology Officer", "engineering"),
    ),
    "champion": (
        ("Operations Manager", "operations"),
        ("Analytics Lead", "analytics"),
        ("RevOps Manager", "operations"),
        ("Director of Customer Success", "customer_success"),
        ("Product Operations Lead", "product"),
    ),
    "admin": (
        ("IT Administrator", "it"),
        ("Systems Administrator", "it"),
        ("Business Systems Analyst", "it"),
    ),
    "user": (
        ("Data Analyst", "analytics"),
        ("Account Executive", "sales"),
        ("Support Specialist", "customer_support"),
        ("Marketing Manager", "marketing"),
        ("Financial Analyst", "finance"),
        ("Software Engineer", "engineering"),
        ("Project Manager", "operations"),
        ("Customer Success Manager", "customer_success"),
    ),
}

TICKET_SUBJECTS: dict[str, tuple[str, ...]] = {
    "how_to": (
        "How do I export a report to CSV?",
        "Adding new users to our workspace",
        "Question about dashboard filters",
        "How to set up SSO",
        "Where can I find the API key?",
        "Can we schedule reports weekly?",
        "Help configuring the Salesforce integration",
        "How do permissions work for viewers?",
    ),
    "bug": (
        "Dashboard shows wrong totals",
        "Export fails with error 500",
        "Chart does not render in Safari",
        "Workflow triggered twice",
        "API returns 502 intermittently",
        "Integration sync stuck",
        "Date filter ignores timezone",
    ),
    "complaint": (
        "Very unhappy with response times",
        "This keeps breaking for our team",
        "Pricing increase not acceptable",
        "Product is too slow for daily use",
        "Still waiting on a fix from last month",
        "Considering other options",
    ),
    "outage": (
        "URGENT: application is down",
        "Cannot log in - whole team blocked",
        "All dashboards failing to load",
        "API completely unavailable",
        "Data not updating since this morning",
    ),
}
TICKET_EXTRA_TAGS = (
    "billing",
    "sso",
    "api",
    "reporting",
    "integration",
    "permissions",
    "performance",
    "export",
)
GOOD_COMMENTS = (
    "",
    "",
    "",
    "Thanks, quick fix!",
    "Great support as always",
    "Very helpful, thank you",
    "Solved my problem",
    "Fast and friendly",
)
BAD_COMMENTS = (
    "",
    "Took far too long",
    "Issue is not really fixed",
    "Had to explain three times",
    "No one followed up",
    "Still broken for us",
)


def _base62_codes(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(0, 62, size=(n, length), dtype=np.uint8)


def _codes_to_ids(codes: np.ndarray, prefix: str) -> pa.Array:
    pre = np.frombuffer(prefix.encode(), dtype=np.uint8)
    n, length = codes.shape
    width = len(pre) + length
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(pre)] = pre
    buf[:, len(pre) :] = BASE62[codes]
    raw = buf.view(f"S{width}").ravel()
    return pa.array(raw, type=pa.binary(width)).cast(pa.string())


def unique_base62_ids(rng: np.random.Generator, n: int, length: int, prefix: str) -> pa.Array:
    """Random, unique base62 identifiers like Stripe's ("cus_", "in_"); drawn, not hashed, so they look opaque.

    Uniqueness is enforced on the first 10 characters (62**10 fits an int64), which implies whole-id uniqueness.
    """
    if length < 10:
        raise ValueError("length must be >= 10")
    codes = _base62_codes(rng, n, length)
    while True:
        key = np.zeros(n, dtype=np.int64)
        for j in range(10):
            key *= 62
            key += codes[:, j]
        order = np.argsort(key, kind="stable")
        dup_sorted = np.zeros(n, dtype=bool)
        dup_sorted[1:] = key[order][1:] == key[order][:-1]
        if not dup_sorted.any():
            return _codes_to_ids(codes, prefix)
        dup = order[dup_sorted]
        codes[dup] = _base62_codes(rng, len(dup), length)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer: distinct inputs give distinct outputs, so hashed ids stay unique."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def hex16(x: np.ndarray) -> pa.Array:
    """uint64 values as 16-char lowercase hex strings (big-endian digit order), built without Python loops."""
    be = x.astype(">u8").view(np.uint8).reshape(-1, 8)
    pairs = _HEX_PAIRS[be]  # [n, 8] uint16, each two ASCII bytes
    raw = np.ascontiguousarray(pairs).view("S16").ravel()
    return pa.array(raw, type=pa.binary(16)).cast(pa.string())


def int_strings(x: np.ndarray) -> pa.Array:
    """Integers as decimal strings (Arrow, vectorised)."""
    return pc.cast(pa.array(np.asarray(x, dtype=np.int64)), pa.string())


def take_strings(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """Gather strings by integer index (Arrow take, vectorised)."""
    return pc.take(values, pa.array(np.asarray(idx, dtype=np.int64)))


def choose_strings(options: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Map small integer codes to a fixed vocabulary."""
    return take_strings(pa.array(list(options), type=pa.string()), codes)


def str_series(arr: pa.Array | np.ndarray | list, index: pd.Index | None = None) -> pd.Series:
    """pandas default string dtype ("str") from Arrow or numpy data."""
    return pd.Series(arr, dtype="str", index=index)


def slug(s: str) -> str:
    """Lowercase ascii-ish slug for domains and emails."""
    return "".join(ch for ch in s.lower().replace("ü", "u") if ch.isalnum())
