"""flight_agent: flight search between ~35 airports with a generated, stable schedule.

Cities map to their airports (NYC -> JFK/EWR/LGA, Paris -> CDG/ORY); flights for
a route and date are derived from a hash of both, with durations from the great
circle distance and arrival times in local time, so results look plausible and
never change between runs.  When weather_agent answered first in the same turn,
one sentence of its forecast for the destination is added: the hand-off at work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, timedelta

from examples.agents.common import Agent, Chat, find_date, find_names, main, stable_int, today


@dataclass(frozen=True)
class Airport:
    code: str
    city: str
    name: str
    lat: float
    lon: float
    utc: float          # standard-time UTC offset (the demo ignores daylight saving)
    long_haul: bool = True


AIRPORTS = {a.code: a for a in [
    Airport("JFK", "New York", "John F. Kennedy", 40.64, -73.78, -5),
    Airport("EWR", "New York", "Newark Liberty", 40.69, -74.17, -5),
    Airport("LGA", "New York", "LaGuardia", 40.78, -73.87, -5, long_haul=False),
    Airport("BOS", "Boston", "Logan", 42.36, -71.01, -5),
    Airport("MIA", "Miami", "Miami Intl", 25.79, -80.29, -5),
    Airport("ORD", "Chicago", "O'Hare", 41.98, -87.90, -6),
    Airport("SEA", "Seattle", "Seattle-Tacoma", 47.45, -122.31, -8),
    Airport("SFO", "San Francisco", "San Francisco Intl", 37.62, -122.38, -8),
    Airport("LAX", "Los Angeles", "Los Angeles Intl", 33.94, -118.41, -8),
    Airport("YYZ", "Toronto", "Pearson", 43.68, -79.63, -5),
    Airport("MEX", "Mexico City", "Benito Juárez", 19.44, -99.07, -6),
    Airport("GRU", "São Paulo", "Guarulhos", -23.43, -46.47, -3),
    Airport("CDG", "Paris", "Charles de Gaulle", 49.01, 2.55, 1),
    Airport("ORY", "Paris", "Orly", 48.73, 2.36, 1),
    Airport("LHR", "London", "Heathrow", 51.47, -0.45, 0),
    Airport("LGW", "London", "Gatwick", 51.15, -0.19, 0),
    Airport("BER", "Berlin", "Brandenburg", 52.37, 13.50, 1),
    Airport("FRA", "Frankfurt", "Frankfurt", 50.03, 8.57, 1),
    Airport("MUC", "Munich", "Munich", 48.35, 11.79, 1),
    Airport("AMS", "Amsterdam", "Schiphol", 52.31, 4.76, 1),
    Airport("MAD", "Madrid", "Barajas", 40.47, -3.57, 1),
    Airport("FCO", "Rome", "Fiumicino", 41.80, 12.25, 1),
    Airport("LIS", "Lisbon", "Humberto Delgado", 38.78, -9.14, 0),
    Airport("DUB", "Dublin", "Dublin", 53.42, -6.27, 0),
    Airport("ZRH", "Zurich", "Zurich", 47.46, 8.55, 1),
    Airport("OSL", "Oslo", "Gardermoen", 60.19, 11.10, 1),
    Airport("IST", "Istanbul", "Istanbul", 41.28, 28.75, 3),
    Airport("DXB", "Dubai", "Dubai Intl", 25.25, 55.36, 4),
    Airport("BOM", "Mumbai", "Chhatrapati Shivaji", 19.09, 72.87, 5.5),
    Airport("DEL", "Delhi", "Indira Gandhi", 28.56, 77.10, 5.5),
    Airport("SIN", "Singapore", "Changi", 1.36, 103.99, 8),
    Airport("HKG", "Hong Kong", "Hong Kong Intl", 22.31, 113.91, 8),
    Airport("ICN", "Seoul", "Incheon", 37.46, 126.44, 9),
    Airport("HND", "Tokyo", "Haneda", 35.55, 139.78, 9),
    Airport("NRT", "Tokyo", "Narita", 35.77, 140.39, 9),
    Airport("SYD", "Sydney", "Kingsford Smith", -33.95, 151.18, 10),
]}
CITY_AIRPORTS: dict[str, list[str]] = {}
for _a in AIRPORTS.values():
    CITY_AIRPORTS.setdefault(_a.city, []).append(_a.code)

# alias -> place key (a city name or an IATA code); upper-case codes only match upper-case
PLACES = {**{c.lower(): c for c in CITY_AIRPORTS}, **{code: code for code in AIRPORTS},
          "nyc": "New York", "new york city": "New York", "SF": "San Francisco", "LA": "Los Angeles",
          "sao paulo": "São Paulo", "new delhi": "Delhi"}

AIRLINES = [("Aurora Air", "RX"), ("Bluebird Airways", "BQ"), ("Cirrus Lines", "CQ"),
            ("Meridian Jet", "MJ"), ("Northwind", "NW"), ("Solstice Airlines", "SX")]
HUBS = ["DXB", "SIN", "HKG", "IST", "FRA"]
FROM_RE = re.compile(r"\b(from|leaving|departing|out of|between)\s*$", re.I)
TO_RE = re.compile(r"(\b(to|into|towards|arriving in)|→|->|-)\s*$", re.I)


def airports_of(place: str) -> list[str]:
    return [place] if place in AIRPORTS else CITY_AIRPORTS[place]


def label(place: str) -> str:
    return f"{AIRPORTS[place].city} ({place})" if place in AIRPORTS else f"{place} ({', '.join(CITY_AIRPORTS[place])})"


def city_of(place: str) -> str:
    return AIRPORTS[place].city if place in AIRPORTS else place


def find_route(text: str) -> tuple[str | None, str | None]:
    """(origin, destination) places: 'from X', 'to Y', 'X to Y', 'between X and Y', 'JFK-CDG'."""
    mentions = find_names(text, PLACES)
    origin = dest = None
    for start, _, place in mentions:
        before = text[:start]
        if origin is None and FROM_RE.search(before):
            origin = place
        elif dest is None and (TO_RE.search(before) or (origin and re.search(r"between\W.*\band\s*$", before, re.I))):
            dest = place
    taken = {city_of(p) for p in (origin, dest) if p}
    others = list(dict.fromkeys(p for _, _, p in mentions if city_of(p) not in taken))
    if origin is None and others and (dest is not None or len(others) > 1):
        origin = others.pop(0)
        others = [p for p in others if city_of(p) != city_of(origin)]
    if dest is None and others:
        dest = others[0]
    return origin, dest


def distance_km(a: Airport, b: Airport) -> float:
    la1, lo1, la2, lo2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(h))


def schedule(origins: list[str], dests: list[str], day: date) -> list[dict]:
    """One or two flights per airport pair, sorted by departure (demo data)."""
    pairs = [(AIRPORTS[o], AIRPORTS[d]) for o in origins for d in dests if o != d]
    if any(a.long_haul and b.long_haul for a, b in pairs):
        pairs = [(a, b) for a, b in pairs if distance_km(a, b) < 3000 or (a.long_haul and b.long_haul)]
    flights = []
    for a, b in pairs:
        km = distance_km(a, b)
        for i in range(1 + stable_int(a.code, b.code, day) % 2):
            h = stable_int("flight", a.code, b.code, day, i)
            airline, code = AIRLINES[h % len(AIRLINES)]
            depart = 6 * 60 + (h >> 8) % 64 * 15                       # 06:00 .. 21:45 local
            minutes = round((km / 830 * 60 + 40) / 5) * 5 + (h >> 16) % 4 * 5
            via = None
            if minutes > 17 * 60:  # too long to fly nonstop: connect through the best-placed hub
                via = min(HUBS, key=lambda c: distance_km(a, AIRPORTS[c]) + distance_km(AIRPORTS[c], b))
                minutes += 120
            arrive = depart + minutes + round((b.utc - a.utc) * 60)
            price = round((60 + km * 0.085) * (0.8 + (h >> 24) % 45 / 100))
            flights.append({"number": f"{code} {100 + (h >> 32) % 900}", "airline": airline, "via": via,
                            "from": a.code, "to": b.code, "depart": depart, "arrive": arrive,
                            "minutes": minutes, "price": price})
    return sorted(flights, key=lambda f: (f["depart"], f["number"]))[:8]


def clock(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    suffix = f" (+{days} day)" if days == 1 else (f" (+{days} days)" if days > 1 else (" (-1 day)" if days < 0 else ""))
    return f"{rest // 60:02d}:{rest % 60:02d}{suffix}"


def weather_note(forecast: str, city: str) -> str | None:
    """One sentence of weather_agent's answer about the destination, if it gave one."""
    lines = [ln.strip(" -") for ln in forecast.splitlines() if "°" in ln]
    about = [ln for ln in lines if city.lower() in ln.lower()] or lines
    if not about:
        return None
    sentence = about[0].rstrip(".")
    return f"Weather at your destination (from weather_agent): {sentence[:220]}."


class FlightAgent(Agent):
    id = "flight_agent"
    description = ("a flight search service: flights between cities and airports on a date, with airline, "
                   "flight number, departure and arrival times, duration and price")
    default_port = 10520

    def answer(self, chat: Chat) -> str:
        origin, dest = find_route(chat.question)
        if origin is None or dest is None:  # a follow-up ("and on Friday?"): reuse the last route
            for text in reversed(chat.earlier):
                old_origin, old_dest = find_route(text)
                if old_origin and old_dest:
                    origin, dest = origin or old_origin, dest or old_dest
                    break
        if origin is None or dest is None:
            known = "Where are you flying from and to?" if origin is None and dest is None else (
                f"Where are you flying {'from' if origin is None else 'to'}?")
            return (f"{known} For example: 'flights from NYC to Paris tomorrow'. Demo airports: "
                    + ", ".join(sorted(AIRPORTS)) + ".")
        if city_of(origin) == city_of(dest):
            return f"{label(origin)} and {label(dest)} are the same place; pick two different cities."

        base = today()
        day = find_date(chat.question, base)
        note = ""
        if day is None or day < base:
            note = " (no date given, showing tomorrow)" if day is None else " (that date has passed, showing tomorrow)"
            day = base + timedelta(days=1)
        flights = schedule(airports_of(origin), airports_of(dest), day)
        if not flights:
            return f"No demo flights between {label(origin)} and {label(dest)}."
        lines = [f"Flights from {label(origin)} to {label(dest)} on {day.strftime('%a')} {day.day} "
                 f"{day.strftime('%b %Y')}{note} — demo schedule, local times:"]
        for n, f in enumerate(flights, 1):
            h, m = divmod(f["minutes"], 60)
            stops = f"1 stop via {f['via']}" if f["via"] else "nonstop"
            lines.append(f"{n}. {f['number']} {f['airline']}: {f['from']} {clock(f['depart'])} → {f['to']} "
                         f"{clock(f['arrive'])}, {h}h {m:02d}m, {stops}, economy from ${f['price']}")
        if (forecast := chat.handoffs.get("weather_agent")) and (sentence := weather_note(forecast, city_of(dest))):
            lines.append(sentence)
        lines.append("(Demo data generated offline by flight_agent; nothing can be booked.)")
        return "\n".join(lines)


agent = FlightAgent()

if __name__ == "__main__":
    main(agent)
