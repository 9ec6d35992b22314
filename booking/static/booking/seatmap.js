/* The live seat map of one event.
 *
 * Seats come from the WebSocket (a snapshot, then frames of one seat or of
 * several) and from the API's answers; of two states of one seat the higher
 * `version` wins, whatever order they arrive in. Writes go through the JSON API
 * with the session cookie and the CSRF header, so every rule stays on the
 * server. Time is the server's: the offset between the browser's clock and the
 * server's (snapshot `now`, lock answers) corrects every countdown, and a hold
 * turns free on screen at its expiry even if no message comes (no sweep, or
 * the in-memory channel layer of the embedded run).
 *
 * The map is drawn once per snapshot, section by section, row by row (a gap in
 * a row's numbers is an aisle), into a DocumentFragment; one delegated click
 * handler serves every seat, and a change redraws only its own seat, so a
 * stadium's map stays responsive. State is the seat's fill, category the colour
 * of its back (top band), an accessible place carries a ♿.
 *
 * "Best available" asks the API for the best n seats (POST /api/lock with
 * event and quantity). The box office (permission hold_for_others, told by
 * the page) may switch to selling for a named walk-in customer: every hold,
 * confirm, release and best available is then made with that name as userId,
 * and a click may block or unblock a seat instead.
 *
 * "My bookings" lists the holder's bookings (GET /api/me/bookings, newest
 * first, a page at a time) with a Cancel button for a confirmed booking of
 * this event (POST /api/bookings/{reference}/cancel); the list is read again
 * after a confirm, a cancel, and a live change that takes a seat out of one of
 * the holder's bookings (the box office cancelled it).
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("seat-map-config").textContent);
  const eventId = config.event.id;
  const seats = new Map(); // id -> seat payload, the newest version seen
  const buttons = new Map(); // id -> its button
  const timed = new Set(); // seats whose newest state is a hold: the ones time can free
  const mine = new Set(); // seats the current holder holds
  const myBookings = new Set(); // seats of this event booked by the current holder
  const categoryIndex = new Map(); // category -> its colour's index in the palette
  const PALETTE_SIZE = 8;
  const LARGE_MAP = 3000; // seats: past this, rows off screen are not laid out (CSS content-visibility)
  let largeMap = false;
  let widestRow = 0; // the widest row's width in seats (rowSpan)
  let clockOffset = 0; // server clock minus browser clock, in ms
  let retries = 0;
  // Whom the page acts for: the signed-in person, or (box office) the customer named.
  let selling = false;
  let blockClicks = false; // box office: a click blocks or unblocks
  let activeHolder = config.user;
  let holderEpoch = 0; // bumped when the holder changes: an older answer is dropped
  let writes = 0; // holds and confirms answered: a read of the holds started before one is partial
  let expiredLabels = []; // the seats the expiry message names

  const $ = (id) => document.getElementById(id);
  const map = $("seat-map");
  const serverNow = () => Date.now() + clockOffset;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** "A1", "A1 and A2", "A1, A2 and A3". */
  function listing(items) {
    return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
  }

  /* --- State ------------------------------------------------------------- */

  function isLive(seat) {
    return seat.status === "locked" && seat.lockExpiresAt !== null && Date.parse(seat.lockExpiresAt) > serverNow();
  }

  /** What the seat looks like now: an expired hold is free, as on the server. */
  function displayState(seat) {
    if (seat.status === "booked") return myBookings.has(seat.id) ? "booked-mine" : "booked";
    if (seat.status === "blocked") return "blocked";
    if (isLive(seat)) return mine.has(seat.id) ? "mine" : "locked";
    return "available";
  }

  function stateText(state) {
    if (selling && state === "mine") return activeHolder ? `held for ${activeHolder}` : "held for the customer";
    if (selling && state === "booked-mine") return `booked for ${activeHolder}`;
    return {
      available: "free",
      locked: "held by someone",
      mine: "held by you",
      booked: "booked",
      "booked-mine": "booked by you",
      blocked: "not for sale",
    }[state];
  }

  /** Take a seat's state unless we already have a newer one; true when taken. */
  function apply(seat) {
    const known = seats.get(seat.id);
    if (known && known.version > seat.version) return false;
    seats.set(seat.id, seat);
    if (seat.status === "locked") timed.add(seat.id);
    else {
      timed.delete(seat.id);
      mine.delete(seat.id);
    }
    if (seat.status !== "booked") myBookings.delete(seat.id);
    render(seat.id);
    return true;
  }

  function labels(ids) {
    return ids.map((id) => (seats.get(id) || { label: "#" + id }).label).join(", ");
  }

  /* --- Drawing ----------------------------------------------------------- */

  function lettersIndex(letters) {
    let index = 0;
    for (const letter of letters) index = index * 26 + letter.charCodeAt(0) - 64;
    return index;
  }

  /** Rows front to back as the server ranks them: 1, 2 … 10; A … Z, AA …; anything else by its text. */
  function rowKey(row) {
    const name = String(row).trim().toUpperCase();
    if (/^\d+$/.test(name)) return [0, Number(name), ""];
    if (/^[A-Z]+$/.test(name)) return [1, lettersIndex(name), ""];
    return [2, 0, name];
  }

  function compareRows(a, b) {
    const [x, y] = [rowKey(a), rowKey(b)];
    return x[0] - y[0] || x[1] - y[1] || (x[2] < y[2] ? -1 : x[2] > y[2] ? 1 : 0);
  }

  function seatButton(seat) {
    const button = element("button", "seat", String(seat.number));
    button.type = "button";
    button.dataset.seatId = seat.id;
    button.dataset.label = seat.label;
    if (seat.category) button.dataset.category = seat.category;
    if (seat.accessible) {
      button.dataset.accessible = "true";
      button.append(element("span", "a11y", "♿")); // named in the button's aria-label
      button.lastChild.setAttribute("aria-hidden", "true");
    }
    buttons.set(seat.id, button);
    render(seat.id);
    return button;
  }

  /** One row: seats by number, an aisle where the numbers jump by more than the row's step. */
  /** A row's width in seats (its seats, aisles and gaps, as the CSS lays them out), beside its 2.4rem name. */
  function rowSpan(seatCount, aisles) {
    return seatCount + 0.6 * aisles + 0.136 * (seatCount + aisles);
  }

  /** Its size before it is first drawn: a row off screen keeps its place. */
  function rowSize(seatCount, aisles) {
    return `auto calc(2.4rem + ${rowSpan(seatCount, aisles).toFixed(3)} * var(--seat)) auto var(--seat)`;
  }

  /** Seats as large as the widest row allows in the map's width: 2.2rem, down to 1.5rem (then it scrolls). */
  function fitSeats() {
    const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    const room = map.clientWidth / rem - 1; // its padding, a scroll bar
    const size = Math.max(1.5, Math.min(2.2, (room - 2.4) / widestRow));
    map.style.setProperty("--seat", `${size.toFixed(2)}rem`);
    // Wider still: show its middle, under the stage, both sides a scroll away.
    map.scrollLeft = Math.max(0, (map.scrollWidth - map.clientWidth) / 2);
  }

  function rowLine(section, row, rowSeats) {
    const line = element("div", "seat-row");
    line.setAttribute("role", "group");
    line.setAttribute("aria-label", (section ? section + ", row " : "Row ") + row);
    const name = element("span", "row-name", row);
    name.setAttribute("aria-hidden", "true");
    line.append(name);
    rowSeats.sort((a, b) => a.number - b.number);
    let step = Infinity; // 1 usually; 2 in a row numbered odd or even only
    for (let i = 1; i < rowSeats.length; i++) step = Math.min(step, rowSeats[i].number - rowSeats[i - 1].number || Infinity);
    let aisles = 0;
    rowSeats.forEach((seat, i) => {
      if (i > 0 && seat.number - rowSeats[i - 1].number > step) {
        const aisle = element("span", "aisle");
        aisle.setAttribute("aria-hidden", "true");
        line.append(aisle);
        aisles += 1;
      }
      line.append(seatButton(seat));
    });
    if (largeMap) line.style.containIntrinsicSize = rowSize(rowSeats.length, aisles);
    widestRow = Math.max(widestRow, rowSpan(rowSeats.length, aisles));
    return line;
  }

  function build(list) {
    const sections = new Map(); // section -> row -> seats, sections in the venue's order
    const categories = new Set();
    for (const seat of list) {
      let rows = sections.get(seat.section || "");
      if (!rows) sections.set(seat.section || "", (rows = new Map()));
      let row = rows.get(seat.row);
      if (!row) rows.set(seat.row, (row = []));
      row.push(seat);
      if (seat.category) categories.add(seat.category);
    }
    categoryIndex.clear();
    [...categories].sort().forEach((category, i) => categoryIndex.set(category, i % PALETTE_SIZE));

    buttons.clear(); // filled again by seatButton
    widestRow = 0;
    largeMap = list.length > LARGE_MAP;
    map.classList.toggle("large", largeMap);
    const fragment = document.createDocumentFragment();
    const headed = sections.size > 1 || !sections.has("");
    for (const [section, rows] of sections) {
      const block = element("section", "venue-section");
      block.dataset.section = section;
      if (headed) {
        const heading = element("h2", "section-name", section || "Other seats");
        block.append(heading);
        block.setAttribute("aria-label", heading.textContent);
      }
      for (const row of [...rows.keys()].sort(compareRows)) block.append(rowLine(section, row, rows.get(row)));
      fragment.append(block);
    }
    map.replaceChildren(fragment);
    fitSeats();
    buildLegend();
    buildBestChoices(
      [...sections.keys()].filter(Boolean),
      list.some((seat) => seat.accessible),
    );
  }

  function categoryClass(category) {
    return categoryIndex.has(category) ? " cat-" + categoryIndex.get(category) : "";
  }

  function buildLegend() {
    const legend = $("category-legend");
    legend.replaceChildren(
      ...[...categoryIndex.keys()].map((category) => {
        const item = element("li", "category-item");
        item.dataset.category = category;
        const swatch = element("span", "swatch category" + categoryClass(category));
        swatch.setAttribute("aria-hidden", "true");
        item.append(swatch, ` category ${category}`);
        return item;
      }),
    );
    legend.hidden = categoryIndex.size === 0;
  }

  function render(id) {
    const seat = seats.get(id);
    const button = buttons.get(id);
    if (!seat || !button) return;
    const state = displayState(seat);
    const text = stateText(state);
    const key = `${state}|${text}|${blockClicks}`;
    if (button.seatKey === key) return;
    button.seatKey = key; // what it shows now: a repeated state costs no DOM write
    button.dataset.state = state;
    button.dataset.status = state.startsWith("booked") ? "booked" : state === "mine" ? "locked" : state;
    button.className = "seat " + state + categoryClass(seat.category);
    let label = `Seat ${seat.label}, ${text}`;
    if (seat.accessible) label += ", accessible place";
    if (seat.category) label += `, category ${seat.category}`;
    button.setAttribute("aria-label", label);
    button.title = label.slice(5).replace(", ", ": ");
    // A buyer cannot take a blocked seat; the box office's block mode can unblock it.
    if (state === "blocked" && !blockClicks) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }

  function renderAll() {
    for (const id of seats.keys()) render(id);
  }

  /* --- Messages and the hold panel ---------------------------------------- */

  function say(text, kind, code) {
    const box = $("message");
    box.textContent = text;
    box.className = "message " + (kind || "info");
    box.dataset.code = code || "";
    box.hidden = !text;
  }

  function noSeatsText(wanted) {
    if (!wanted) return "No free seats fit this request right now.";
    const n = wanted.quantity;
    let text = n === 1 ? "There is no free seat" : `There are no ${n} free seats${wanted.together ? " side by side" : ""}`;
    if (wanted.category) text += ` in category ${wanted.category}`;
    if (wanted.section) text += ` in ${wanted.section}`;
    if (wanted.accessible) text += n === 1 ? " that is an accessible place" : " with an accessible place";
    const tries = [];
    if (n > 1) tries.push("fewer seats");
    if (wanted.category) tries.push("another category");
    if (wanted.section) tries.push("another section");
    if (wanted.together && n > 1) tries.push("seats not side by side");
    const alternatives =
      tries.length < 3 ? tries.join(" or ") : `${tries.slice(0, -1).join(", ")}, or ${tries[tries.length - 1]}`;
    return `${text} right now.${tries.length ? ` Try ${alternatives}.` : " Try again in a moment."}`;
  }

  const ERRORS = {
    seat_locked: (ids) => `Seat ${labels(ids)} is held by someone else right now. Pick another seat.`,
    seat_booked: (ids) => `Seat ${labels(ids)} is already booked.`,
    seat_blocked: (ids) => `Seat ${labels(ids)} is held back by the venue and not for sale.`,
    hold_expired: (ids) =>
      selling
        ? `The hold for ${activeHolder} on ${labels(ids)} expired before the booking.`
        : `Your hold on ${labels(ids)} expired before you confirmed.`,
    not_locked_by_you: (ids) => (selling ? `${activeHolder} does not hold ${labels(ids)}.` : `You do not hold ${labels(ids)}.`),
    too_many_holds: () =>
      selling
        ? `${activeHolder} holds as many seats as allowed (${config.maxHolds}). Book or release some first.`
        : `You hold as many seats as allowed (${config.maxHolds}). Confirm or release some first.`,
    no_seats_available: (ids, wanted) => noSeatsText(wanted),
    busy: () => "The service is busy. Try again in a moment.",
    throttled: () => "Too many clicks. Try again in a moment.",
    not_authenticated: () => "Your session has ended. Sign in again.",
    forbidden: () => "Your session has ended. Reload the page and sign in again.",
  };

  function sayError(body, status, wanted) {
    const code = (body && body.code) || "error";
    const make = ERRORS[code];
    const text = make
      ? make((body && body.seats) || [], wanted)
      : (body && body.detail) || `The request failed (${status}).`;
    say(text, "error", code);
  }

  /** Holds that ran out: named all together while the message still tells of expiries. */
  function sayExpired(newLabels) {
    const box = $("message");
    if (box.hidden || box.dataset.code !== "hold_expired") expiredLabels = [];
    for (const label of newLabels) if (!expiredLabels.includes(label)) expiredLabels.push(label);
    const whose = selling ? `The ${expiredLabels.length === 1 ? "hold" : "holds"} for ${activeHolder}` : "Your";
    const holds = selling ? "" : expiredLabels.length === 1 ? " hold" : " holds";
    say(`${whose}${holds} on ${listing(expiredLabels)} expired.`, "error", "hold_expired");
  }

  function updatePanel() {
    const confirm = $("confirm");
    if (!confirm) return;
    const holds = [...mine].filter((id) => seats.has(id) && isLive(seats.get(id)));
    confirm.disabled = holds.length === 0;
    $("release").disabled = holds.length === 0;
    const countdown = $("countdown");
    if (holds.length === 0) {
      countdown.hidden = true;
      $("hold-status").textContent = !selling
        ? "Click a free seat to hold it, or ask for the best available."
        : blockClicks
          ? "Click a free seat to block it, a blocked seat to unblock it."
          : activeHolder
            ? `Click free seats or ask for the best available to hold them for ${activeHolder}.`
            : "Enter the customer's name, then pick their seats.";
      return;
    }
    const ends = Math.min(...holds.map((id) => Date.parse(seats.get(id).lockExpiresAt)));
    const left = Math.max(0, Math.ceil((ends - serverNow()) / 1000));
    $("hold-status").textContent = selling ? `Held for ${activeHolder}: ${labels(holds)}.` : `You hold ${labels(holds)}.`;
    countdown.hidden = false;
    countdown.dataset.seconds = left;
    countdown.textContent = `Confirm within ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  }

  /** Four times a second: holds whose time is up turn free on screen, the countdown moves. */
  function tick() {
    const expired = [];
    for (const id of [...timed]) {
      const seat = seats.get(id);
      if (!seat || isLive(seat)) continue;
      timed.delete(id);
      if (mine.delete(id)) expired.push(seat.label);
      render(id);
    }
    if (expired.length) sayExpired(expired);
    updatePanel();
  }

  /* --- The API ----------------------------------------------------------- */

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  const UNREACHABLE = "The service cannot be reached. Check your connection and try again.";

  /** POST a JSON body with the session and its CSRF token: {ok, status, body}, or null when unreachable. */
  async function post(path, payload) {
    let response;
    try {
      response = await fetch(config.api + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(payload),
      });
    } catch (error) {
      return null;
    }
    const body = await response.json().catch(() => null);
    return { ok: response.ok, status: response.status, body };
  }

  /** A write's answer body, or null after saying why it failed (`wanted`: a best-available request). */
  async function write(path, payload, wanted) {
    const answer = await post(path, payload);
    if (!answer) {
      say(UNREACHABLE, "error", "network");
      return null;
    }
    const body = answer.body;
    if (!answer.ok) {
      sayError(body, answer.status, wanted);
      return null;
    }
    writes += 1;
    if (typeof body.expiresInSeconds === "number" && body.lockExpiresAt) {
      // The server's clock, from the freshest answer: its expiry minus the time left.
      clockOffset = Date.parse(body.lockExpiresAt) - body.expiresInSeconds * 1000 - Date.now();
    }
    return body;
  }

  /** A hold, confirm or release body for the current holder (the customer's name for the box office). */
  function asHolder(payload) {
    return selling ? { ...payload, userId: activeHolder } : payload;
  }

  function holderQuery(separator) {
    return selling ? `${separator}userId=${encodeURIComponent(activeHolder)}` : "";
  }

  /** The holds and bookings of the current holder, read again (on a snapshot, or another holder). */
  async function refreshMine() {
    if (!config.user || !activeHolder) return;
    const epoch = holderEpoch;
    const writesBefore = writes;
    const response = await fetch(config.api + "/me/seats" + holderQuery("?"), { credentials: "same-origin" }).catch(
      () => null,
    );
    if (!response || !response.ok || epoch !== holderEpoch) return;
    const body = await response.json();
    if (epoch !== holderEpoch) return;
    const touched = new Set([...mine, ...myBookings]);
    if (writes === writesBefore) {
      // Read after every write of ours: it is the whole truth. Otherwise it only adds.
      mine.clear();
      myBookings.clear();
    }
    for (const seat of body.seats) {
      if (seat.event !== eventId) continue;
      (seat.status === "booked" ? myBookings : mine).add(seat.id);
      touched.add(seat.id);
      apply(seat);
    }
    touched.forEach(render);
    updatePanel();
  }

  /** The box office names another customer (or leaves the mode): the page acts for them from now on. */
  function switchHolder(name) {
    if (name === activeHolder) return;
    activeHolder = name;
    holderEpoch += 1;
    const touched = [...mine, ...myBookings];
    mine.clear();
    myBookings.clear();
    touched.forEach(render);
    renderAll(); // the holder's name is in every held seat's label
    updatePanel();
    refreshMine();
    refreshBookings();
  }

  function customerName() {
    const field = $("customer");
    return field ? field.value.trim() : "";
  }

  /** A box office write needs a customer; the one typed now, even before the field's change event. */
  function holderReady() {
    if (!selling) return true;
    switchHolder(customerName());
    if (activeHolder) return true;
    say("Enter the customer's name first: their seats are held and booked in that name.", "error", "customer_missing");
    $("customer").focus();
    return false;
  }

  async function onSeatClick(id) {
    const seat = seats.get(id);
    if (!seat) return;
    if (!config.user) {
      say("Sign in to hold seats.", "info", "sign_in");
      return;
    }
    if (blockClicks) {
      await toggleBlock(seat);
      return;
    }
    if (seat.status === "blocked") {
      say(`Seat ${seat.label} is held back by the venue and not for sale.`, "info", "seat_blocked");
      return;
    }
    if (!holderReady()) return;
    if (displayState(seat) === "mine") {
      const body = await write("/unlock", asHolder({ seatIds: [id] }));
      if (body) {
        mine.delete(id);
        body.seats.forEach(apply);
        say(`Released ${seat.label}.`, "info");
      }
    } else {
      const epoch = holderEpoch;
      const body = await write("/lock", asHolder({ seatIds: [id] }));
      if (body && epoch === holderEpoch) {
        mine.add(id);
        body.seats.forEach(apply);
        render(id);
        const whose = selling ? `held for ${activeHolder}` : "yours";
        say(`${seat.label} is ${whose} for ${Math.round(body.expiresInSeconds)} s. Confirm to book it.`, "info");
      }
    }
    updatePanel();
  }

  async function confirmHolds() {
    const ids = [...mine].filter((id) => isLive(seats.get(id)));
    if (!ids.length) return;
    const customer = selling ? activeHolder : null;
    const body = await write("/confirm", asHolder({ seatIds: ids }));
    if (body) {
      for (const seat of body.seats) {
        mine.delete(seat.id);
        myBookings.add(seat.id);
        apply(seat);
        render(seat.id);
      }
      const booked = customer ? `Booked ${labels(ids)} for ${customer}.` : `Booked ${labels(ids)}.`;
      if (body.booking) {
        say(`${booked} ${customer ? "The" : "Your"} booking reference is `, "success");
        const reference = element("strong", "reference", body.booking.reference);
        reference.id = "booking-reference";
        $("message").append(reference, customer ? "." : ". Enjoy the show!");
      } else {
        say(customer ? booked : `${booked} Enjoy the show!`, "success");
      }
      refreshBookings();
    }
    updatePanel();
  }

  async function releaseHolds() {
    const ids = [...mine];
    if (!ids.length) return;
    const body = await write("/unlock", asHolder({ seatIds: ids }));
    if (body) {
      ids.forEach((id) => mine.delete(id));
      body.seats.forEach(apply);
      ids.forEach(render);
      say(`Released ${labels(ids)}.`, "info");
    }
    updatePanel();
  }

  /* --- Best available ---------------------------------------------------- */

  function fillSelect(select, values, text) {
    const chosen = select.value;
    select.replaceChildren(
      ...values.map((value) => {
        const option = element("option", "", text(value));
        option.value = value;
        return option;
      }),
    );
    if (values.map(String).includes(chosen)) select.value = chosen;
  }

  /** The choices the map offers: 1 to the hold limit, the categories and sections present. */
  function buildBestChoices(sections, anyAccessible) {
    if (!$("best-form")) return;
    const counts = Array.from({ length: config.maxHolds }, (_, i) => i + 1);
    fillSelect($("best-quantity"), counts, String);
    if (!$("best-quantity").value || $("best-quantity").dataset.touched !== "true") $("best-quantity").value = "2";
    fillSelect($("best-category"), ["", ...categoryIndex.keys()], (value) => value || "any");
    fillSelect($("best-section"), ["", ...sections], (value) => value || "any");
    $("best-section-field").hidden = sections.length < 2;
    $("best-accessible").disabled = !anyAccessible;
  }

  async function holdBest(event) {
    event.preventDefault();
    if (!holderReady()) return;
    const wanted = {
      quantity: Number($("best-quantity").value),
      category: $("best-category").value,
      section: $("best-section").value,
      together: $("best-together").checked,
      accessible: $("best-accessible").checked,
    };
    const request = { event: eventId, quantity: wanted.quantity, together: wanted.together };
    if (wanted.accessible) request.accessible = true;
    if (wanted.category) request.category = wanted.category;
    if (wanted.section) request.section = wanted.section;
    const button = $("best-hold");
    button.disabled = true;
    const epoch = holderEpoch;
    const body = await write("/lock", asHolder(request), wanted);
    button.disabled = false;
    if (body && epoch === holderEpoch) {
      const ids = body.seats.map((seat) => seat.id);
      for (const seat of body.seats) {
        mine.add(seat.id);
        apply(seat);
        render(seat.id);
      }
      const whose = selling ? `held for ${activeHolder}` : "yours";
      const them = ids.length === 1 ? "it" : "them";
      say(
        `Best available: ${labels(ids)}, ${whose} for ${Math.round(body.expiresInSeconds)} s. Confirm to book ${them}.`,
        "success",
        "best_available",
      );
      const first = buttons.get(ids[0]);
      if (first) first.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
    updatePanel();
  }

  /* --- The box office ---------------------------------------------------- */

  async function toggleBlock(seat) {
    if (seat.status === "blocked") {
      const body = await write("/unblock", { seatIds: [seat.id] });
      if (body) {
        body.seats.forEach(apply);
        say(`Unblocked ${seat.label}: it is for sale again.`, "info", "unblocked");
      }
      return;
    }
    const reason = $("block-reason").value.trim();
    const body = await write("/block", reason ? { seatIds: [seat.id], reason } : { seatIds: [seat.id] });
    if (body) {
      body.seats.forEach(apply);
      say(`Blocked ${seat.label}${reason ? ` (${reason})` : ""}: not for sale until unblocked.`, "info", "blocked");
    }
  }

  function setSelling(on) {
    selling = on;
    $("box-office-controls").hidden = !on;
    $("legend-mine").textContent = on ? "held for the customer" : "held by you";
    $("legend-booked-mine").textContent = on ? "booked for the customer" : "booked by you";
    $("confirm").textContent = on ? "Book for the customer" : "Confirm my held seats";
    $("release").textContent = on ? "Release the customer's seats" : "Release my held seats";
    document.body.classList.toggle("selling", on);
    setClickMode();
    switchHolder(on ? customerName() : config.user);
    if (on && !activeHolder) $("customer").focus();
  }

  function setClickMode() {
    const checked = document.querySelector('input[name="click-mode"]:checked');
    blockClicks = selling && checked !== null && checked.value === "block";
    map.classList.toggle("block-clicks", blockClicks);
    renderAll();
    updatePanel();
  }

  /* --- My bookings ------------------------------------------------------- */

  const bookingList = $("booking-list");
  const bookingErrors = new Map(); // reference -> the API's refusal, shown until the next try
  const asking = new Set(); // references whose "Cancel?" question is open
  const cancelling = new Set(); // references whose cancel request is under way
  const eventNames = new Map([[eventId, config.event.name]]);
  let bookingsRead = 0; // a later answer replaces an earlier one, never the reverse
  let bookingsTimer = null;

  async function readBookings(url) {
    const response = await fetch(url, { credentials: "same-origin" }).catch(() => null);
    if (!response || !response.ok) return null;
    return response.json().catch(() => null);
  }

  /** Names of the other events the person has bookings for, read once. */
  async function learnEventNames(bookings) {
    if (bookings.every((booking) => eventNames.has(booking.event))) return;
    const response = await fetch(config.api + "/events", { credentials: "same-origin" }).catch(() => null);
    if (!response || !response.ok) return;
    for (const event of await response.json()) eventNames.set(event.id, event.name);
  }

  /** Read the first page again (after a confirm, a cancel, a live change of one of the person's seats). */
  async function refreshBookings() {
    if (!bookingList) return;
    const ticket = ++bookingsRead;
    $("my-bookings-title").textContent = selling ? `Bookings of ${activeHolder || "the customer"}` : "My bookings";
    if (!activeHolder) {
      bookingList.replaceChildren();
      showMore(null);
      return;
    }
    const page = await readBookings(config.api + "/me/bookings?pageSize=10" + holderQuery("&"));
    if (ticket !== bookingsRead) return;
    if (!page) {
      $("bookings-status").textContent = "Your bookings cannot be read right now.";
      return;
    }
    await learnEventNames(page.results);
    if (ticket !== bookingsRead) return;
    bookingList.replaceChildren(...page.results.map(bookingItem));
    showMore(page.next);
  }

  function scheduleBookingsRefresh() {
    clearTimeout(bookingsTimer);
    bookingsTimer = setTimeout(refreshBookings, 300);
  }

  function showMore(next) {
    const more = $("bookings-more");
    more.hidden = !next;
    more.dataset.next = next || "";
    const count = bookingList.children.length;
    $("bookings-status").textContent = count
      ? `${count} booking${count === 1 ? "" : "s"}${next ? " (newest first)" : ""}.`
      : !selling
        ? "You have no bookings yet. Hold seats and confirm them to book."
        : activeHolder
          ? `${activeHolder} has no bookings yet.`
          : "Enter the customer's name to see their bookings.";
  }

  async function moreBookings() {
    const next = $("bookings-more").dataset.next;
    if (!next) return;
    const ticket = ++bookingsRead;
    const page = await readBookings(next);
    if (ticket !== bookingsRead || !page) return;
    await learnEventNames(page.results);
    bookingList.append(...page.results.map(bookingItem));
    showMore(page.next);
  }

  function bookingItem(booking) {
    const here = booking.event === eventId;
    const item = element("li", "booking " + booking.status);
    item.dataset.reference = booking.reference;
    item.dataset.status = booking.status;
    item.dataset.event = booking.event;

    const head = element("div", "booking-head");
    head.append(element("strong", "reference", booking.reference), " ");
    head.append(element("span", "badge " + booking.status, booking.status), " ");
    const where = here ? element("span", "muted", eventNames.get(booking.event)) : element("a", "muted");
    if (!here) {
      where.href = `/events/${booking.event}/`;
      where.textContent = eventNames.get(booking.event) || `Event ${booking.event}`;
    }
    head.append(where);
    item.append(head);

    const seatsLine = element("div", "booking-seats");
    const now = booking.seats.map((seat) => seat.label).join(", ");
    const gone = booking.cancelledSeats.map((seat) => seat.label).join(", ");
    seatsLine.append(element("span", "seat-labels", now ? `Seats ${now}` : "No seats left"));
    if (gone) seatsLine.append(" ", element("span", "muted cancelled-labels", `(cancelled: ${gone})`));
    item.append(seatsLine);

    if (here && booking.status === "confirmed") item.append(cancelControls(booking));
    const refusal = bookingErrors.get(booking.reference);
    if (refusal) {
      const error = element("p", "message error booking-error", refusal.detail);
      error.setAttribute("role", "alert");
      error.dataset.code = refusal.code;
      item.append(error);
    }
    return item;
  }

  /** "Cancel", then "Yes, cancel it" or "Keep it": one click never cancels a booking. The question
   * stays open across a re-read of the list (a live change may come while the person decides). */
  function cancelControls(booking) {
    const reference = booking.reference;
    const box = element("div", "booking-actions");
    const redraw = () => {
      const fresh = cancelControls(booking);
      box.replaceWith(fresh);
      return fresh;
    };
    if (!asking.has(reference)) {
      const ask = element("button", "cancel", "Cancel");
      ask.type = "button";
      ask.setAttribute("aria-label", `Cancel booking ${reference}`);
      ask.addEventListener("click", () => {
        asking.add(reference);
        redraw().querySelector("button.keep").focus();
      });
      box.append(ask);
      return box;
    }
    const question = element("span", "question", `Cancel ${reference}? Its seats become free for anyone. `);
    const yes = element("button", "confirm-cancel", "Yes, cancel it");
    const no = element("button", "keep secondary", "Keep it");
    yes.type = no.type = "button";
    yes.disabled = no.disabled = cancelling.has(reference);
    yes.addEventListener("click", () => cancelBooking(booking, box));
    no.addEventListener("click", () => {
      asking.delete(reference);
      redraw().querySelector("button.cancel").focus();
    });
    box.append(question, yes, " ", no);
    return box;
  }

  async function cancelBooking(booking, box) {
    const reference = booking.reference;
    cancelling.add(reference);
    for (const button of box.querySelectorAll("button")) button.disabled = true;
    bookingErrors.delete(reference);
    const answer = await post(`/bookings/${encodeURIComponent(reference)}/cancel`, {});
    cancelling.delete(reference);
    asking.delete(reference);
    if (!answer) {
      bookingErrors.set(reference, { code: "network", detail: UNREACHABLE });
    } else if (!answer.ok) {
      const body = answer.body || {};
      bookingErrors.set(reference, {
        code: body.code || "error",
        detail: body.detail || `The booking could not be cancelled (${answer.status}).`,
      });
    } else {
      for (const seat of answer.body.seats) {
        myBookings.delete(seat.id);
        apply(seat);
      }
      const freed = answer.body.seats.map((seat) => seat.label);
      const verb = freed.length === 1 ? "is" : "are";
      say(`Cancelled booking ${reference}: ${freed.join(", ")} ${verb} free again.`, "info");
      updatePanel();
    }
    await refreshBookings();
  }

  /* --- The WebSocket ----------------------------------------------------- */

  function setConnection(state, text) {
    const element = $("connection");
    element.dataset.state = state;
    element.textContent = text;
  }

  function seatsOfRows(message) {
    return message.rows.map((row) => {
      const seat = { event: message.event };
      message.columns.forEach((column, index) => {
        seat[column] = row[index];
      });
      return seat;
    });
  }

  function onSnapshot(message) {
    retries = 0;
    clockOffset = Date.parse(message.now) - Date.now();
    const rebuild = message.seats.length !== buttons.size || message.seats.some((seat) => !buttons.has(seat.id));
    if (rebuild) {
      seats.clear();
      timed.clear();
      buttons.clear();
    }
    message.seats.forEach(apply); // draws nothing while there are no buttons
    if (rebuild) build(message.seats); // each seat drawn as its button is made, off the page
    map.setAttribute("aria-busy", "false");
    setConnection("live", "Live: changes appear as they happen.");
    refreshMine();
    refreshBookings();
  }

  /** One seat's change; the caller updates the panel once per frame. */
  function onSeat(seat, expired) {
    const known = seats.get(seat.id);
    // A new hold on a seat whose hold of ours has run out is someone else's.
    if (mine.has(seat.id) && known && !isLive(known) && seat.version > known.version) mine.delete(seat.id);
    const wasMine = mine.has(seat.id);
    const wasBookedByMe = myBookings.has(seat.id);
    // Freed by the sweep at (or a moment before, by this clock) its expiry: an expiry, not a release.
    const ranOut =
      wasMine &&
      known &&
      seat.version > known.version &&
      seat.status === "available" &&
      Date.parse(known.lockExpiresAt) <= serverNow() + 2000;
    if (apply(seat)) {
      if (ranOut) expired.push(seat.label);
      if (wasMine && seat.status === "booked") refreshMine(); // booked from another tab
      // Booked or cancelled elsewhere (another tab, the box office): the list follows.
      if ((wasMine && seat.status === "booked") || (wasBookedByMe && seat.status !== "booked")) {
        scheduleBookingsRefresh();
      }
    }
  }

  /** `{"type": "seat", "seat"}` or `{"type": "seats", "seats": [...]}`: the same, one pass. */
  function onSeats(list) {
    const expired = [];
    for (const seat of list) onSeat(seat, expired);
    if (expired.length) sayExpired(expired);
    updatePanel();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${config.socketPath}`);
    // The snapshot comes in parts (rows of columns); changes as frames of several seats. The
    // server drops a client that does not acknowledge what it received (it then resyncs).
    let received = 0;
    let acked = 0;
    let snapshotSeats = null;
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      received += 1;
      if (message.type === "snapshot") {
        if (message.part === 0) snapshotSeats = [];
        if (snapshotSeats) snapshotSeats.push(...seatsOfRows(message));
        if (snapshotSeats && message.part + 1 === message.parts) {
          onSnapshot({ now: message.now, seats: snapshotSeats });
          snapshotSeats = null;
        }
      } else if (message.type === "seats") onSeats(message.seats); // the spec's frame of several seats
      else if (message.type === "seat") onSeats([message.seat]);
      else if (message.type === "resync") setConnection("offline", "Catching up…");
      if (received - acked >= 10) {
        acked = received;
        socket.send(JSON.stringify({ ack: received }));
      }
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4404) {
        setConnection("gone", "This event no longer exists.");
        return;
      }
      if (event.code === 4409) retries = 0; // told to resync: reconnect at once for a fresh snapshot
      // Back off (0.5 s, 1 s, 2 s … 30 s, with jitter); the next connect sends a fresh snapshot.
      const delay = Math.min(30000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
      retries += 1;
      setConnection("offline", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
      setTimeout(connect, delay);
    });
  }

  // One handler for every seat, however many: a click on a seat's ♿ is a click on the seat.
  map.addEventListener("click", (event) => {
    const button = event.target.closest("button.seat");
    if (button && map.contains(button)) onSeatClick(Number(button.dataset.seatId));
  });
  if ($("confirm")) {
    $("confirm").addEventListener("click", confirmHolds);
    $("release").addEventListener("click", releaseHolds);
  }
  if ($("best-form")) {
    $("best-form").addEventListener("submit", holdBest);
    $("best-quantity").addEventListener("change", () => ($("best-quantity").dataset.touched = "true"));
  }
  if ($("box-office-mode")) {
    $("box-office-mode").addEventListener("change", (event) => setSelling(event.target.checked));
    $("customer").addEventListener("change", () => selling && switchHolder(customerName()));
    for (const radio of document.querySelectorAll('input[name="click-mode"]')) {
      radio.addEventListener("change", setClickMode);
    }
    if ($("box-office-mode").checked) setSelling(true); // kept checked by the browser across a reload
  }
  if ($("bookings-more")) $("bookings-more").addEventListener("click", moreBookings);
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => widestRow && fitSeats(), 150);
  });
  setConnection("connecting", "Connecting…");
  connect();
  setInterval(tick, 250);
})();
