"""What the reviews are about: the product aspects, the categories with their products, and
the shops the review pages come from."""

from __future__ import annotations

from tools.synthetic.aspects import FIRST_ASPECTS
from tools.synthetic.model import Aspect, Category
from tools.synthetic.more_aspects import MORE_ASPECTS

ASPECTS: dict[str, Aspect] = {**FIRST_ASPECTS, **MORE_ASPECTS}

GENERIC_ASPECTS = (
    "price",
    "delivery",
    "packaging",
    "customer_service",
    "build_quality",
    "instructions",
)

NO_CUE_ASPECTS = frozenset({"smell", "noise", "flicker"})

CATEGORIES: dict[str, Category] = {
    "headphones": Category(
        "headphones",
        True,
        ("sound", "battery", "comfort", "noise_cancelling", "connectivity", "mic"),
        ("my commute", "the gym", "long flights", "work calls"),
        (
            "Aurora ANC-300 Wireless Headphones",
            "Sonique Studio Over-Ear Headphones",
            "Kestrel Q2 Bluetooth Headphones",
        ),
    ),
    "earbuds": Category(
        "earbuds",
        True,
        ("sound", "battery", "fit", "connectivity", "mic"),
        ("running", "my commute", "work calls"),
        ("Pebble Buds Pro", "Vanta TWS-9 Earbuds", "Kestrel Mini Earbuds"),
    ),
    "blender": Category(
        "blender",
        False,
        ("motor_power", "noise", "blades", "cleaning", "smell", "capacity"),
        ("smoothies", "protein shakes", "soups"),
        ("Blendo Max 1200W Blender", "VitaSpin Personal Blender", "Cuisino Pro Countertop Blender"),
    ),
    "running_shoes": Category(
        "shoes",
        True,
        ("fit", "cushioning", "grip", "durability", "smell"),
        ("half marathon training", "daily runs", "trail running"),
        ("Stride Velo 3 Running Shoes", "Trailhawk GTX Trail Runners", "Nimbo Cloud Runner"),
    ),
    "phone_case": Category(
        "case",
        False,
        ("fit", "grip", "buttons", "protection", "discoloration"),
        ("my new phone", "everyday use"),
        ("ArmorLite Clear Case", "GripShell Rugged Phone Case", "SlimFit MagSafe Case"),
    ),
    "desk_lamp": Category(
        "lamp",
        False,
        ("brightness", "color", "flicker", "stability", "controls"),
        ("late night reading", "my home office", "sketching"),
        ("Lumio LED Desk Lamp", "Arcline Architect Lamp", "Glowbar Clamp Lamp"),
    ),
    "coffee_maker": Category(
        "coffee maker",
        False,
        ("taste", "brew_speed", "noise", "smell", "cleaning"),
        ("my morning coffee", "the office kitchen"),
        ("BrewHaus 12-Cup Drip Coffee Maker", "Crema One Pod Machine", "Pourfect Pour Over Kit"),
    ),
    "backpack": Category(
        "backpack",
        False,
        ("zippers", "straps", "pockets", "water_resistance", "durability"),
        ("commuting", "a two week trip", "school"),
        ("Nomad 28L Travel Backpack", "UrbanPack Commuter Bag", "Ridgeline Daypack"),
    ),
    "kettle": Category(
        "kettle",
        False,
        ("boil_speed", "noise", "smell", "lid", "auto_shutoff"),
        ("tea", "pour over coffee", "the dorm"),
        ("Steamly Electric Kettle", "Glassware Gooseneck Kettle", "BoilRight 1.7L Kettle"),
    ),
    "air_fryer": Category(
        "air fryer",
        False,
        ("cooking", "basket", "cleaning", "smell", "capacity", "noise"),
        ("weeknight dinners", "frozen snacks", "a family of four"),
        ("CrispAir 5.8QT Air Fryer", "Fryo Dual Basket Air Fryer", "HotWave Compact Air Fryer"),
    ),
    "keyboard": Category(
        "keyboard",
        False,
        ("key_feel", "noise", "connectivity", "rgb", "battery"),
        ("coding", "gaming", "work"),
        ("Clackboard TKL Mechanical Keyboard", "Keyra 75 Wireless Keyboard", "Typhon RGB Keyboard"),
    ),
    "mouse": Category(
        "mouse",
        False,
        ("tracking", "battery", "connectivity", "ergonomics", "buttons"),
        ("work", "gaming", "travel"),
        ("Glide M3 Wireless Mouse", "Ergonix Vertical Mouse", "Zip Silent Click Mouse"),
    ),
    "yoga_mat": Category(
        "mat",
        False,
        ("grip", "cushioning", "smell", "durability"),
        ("hot yoga", "home workouts", "pilates"),
        ("ZenFlow 6mm Yoga Mat", "GripMat Pro", "Lotus Eco Cork Mat"),
    ),
    "water_bottle": Category(
        "bottle",
        False,
        ("leaks", "insulation", "lid", "cleaning"),
        ("the gym", "hiking", "my desk"),
        ("HydroKeep 32oz Bottle", "Summit Steel Flask", "Sipwell Kids Bottle"),
    ),
    "smartwatch": Category(
        "watch",
        False,
        ("battery", "tracking_accuracy", "app", "screen", "strap"),
        ("tracking runs", "sleep tracking", "notifications"),
        ("Pulse Fit 4 Smartwatch", "Chrono Active GPS Watch", "Vivo Band Lite"),
    ),
    "speaker": Category(
        "speaker",
        False,
        ("sound", "battery", "connectivity", "water_resistance", "volume"),
        ("the beach", "the shower", "parties"),
        ("Boomcube Portable Speaker", "Sonique Go Mini", "WaveRock Outdoor Speaker"),
    ),
    "robot_vacuum": Category(
        "vacuum",
        False,
        ("suction", "navigation", "noise", "app", "battery"),
        ("pet hair", "a small apartment", "hardwood floors"),
        ("RoboSweep S7 Robot Vacuum", "Dustin Mapping Vacuum", "Cleanbot Lite"),
    ),
    "office_chair": Category(
        "chair",
        False,
        ("comfort", "assembly", "armrests", "wheels", "durability"),
        ("my home office", "long gaming sessions", "working from home"),
        ("ErgoSeat Mesh Office Chair", "Throne Pro Gaming Chair", "Posture Task Chair"),
    ),
    "bed_sheets": Category(
        "sheets",
        True,
        ("softness", "washing", "fit", "smell"),
        ("our guest room", "a queen bed", "hot summer nights"),
        ("Cloudrest Bamboo Sheet Set", "Linenly Percale Sheets", "Dreamweave Microfiber Sheets"),
    ),
}

PRODUCTS: tuple[tuple[str, str], ...] = tuple(
    (key, name) for key, cat in CATEGORIES.items() for name in cat.products
)
DOMAINS = (
    "shop.example.com",
    "www.example-mart.test",
    "reviews.example.org",
    "m.bigbox.example",
)
