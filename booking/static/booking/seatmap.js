/* The live seat map of one event.
 *
 * Seats come from the WebSocket (a snapshot, then one message per change) and
 * from the API's answers; of two states of one seat the higher `version` wins,
 * whatever order they arrive in. Writes go through the JSON API with the
 * session cookie and the CSRF header, so every rule stays on the server.
 * Time is the server's: the offset between the browser's clock and the
 * server's (snapshot `now`, lock answers) corrects every countdown, and a hold
 * turns free on screen at its expiry even if no message comes (no sweep, or
 * the in-memory channel layer of the embedded run).
 *
 * "My bookings" lists the signed-in person's bookings (GET /api/me/bookings,
 * newest first, a page at a time) with a Cancel button for a confirmed
 * booking of this event (POST /api/bookings/{reference}/cancel); the list is
 * read again after a confirm, a cancel, and a live change that takes a seat
 * out of one of the person's bookings (the box office cancelled it).
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("seat-map-config").textContent);
  const eventId = config.event.id;
  const seats = new Map(); // id -> seat payload, the newest version seen
  const buttons = new Map(); // id -> its button
  const mine = new Set(); // seats the signed-in person holds
  const myBookings = new Set(); // seats of this event booked by the signed-in person
  let clockOffset = 0; // server clock minus browser clock, in ms
  let retries = 0;

  const $ = (id) => document.getElementById(id);
  const map = $("seat-map");
  const serverNow = () => Date.now() + clockOffset;

  const STATE_TEXT = {
    available: "free",
    locked: "held by someone",
    mine: "held by you",
    booked: "booked",
    "booked-mine": "booked by you",
  };

  /* --- State ------------------------------------------------------------- */

  function isLive(seat) {
    return seat.status === "locked" && seat.lockExpiresAt !== null && Date.parse(seat.lockExpiresAt) > serverNow();
  }

  /** What the seat looks like now: an expired hold is free, as on the server. */
  function displayState(seat) {
    if (seat.status === "booked") return myBookings.has(seat.id) ? "booked-mine" : "booked";
    if (isLive(seat)) return mine.has(seat.id) ? "mine" : "locked";
    return "available";
  }

  /** Take a seat's state unless we already have a newer one; true when taken. */
  function apply(seat) {
    const known = seats.get(seat.id);
    if (known && known.version > seat.version) return false;
    seats.set(seat.id, seat);
    if (seat.status !== "locked") mine.delete(seat.id);
    if (seat.status !== "booked") myBookings.delete(seat.id);
    render(seat.id);
    return true;
  }

  function labels(ids) {
    return ids.map((id) => (seats.get(id) || { label: "#" + id }).label).join(", ");
  }

  /* --- Drawing ----------------------------------------------------------- */

  function build(list) {
    const rows = new Map();
    for (const seat of list) {
      if (!rows.has(seat.row)) rows.set(seat.row, []);
      rows.get(seat.row).push(seat);
    }
    map.replaceChildren();
    buttons.clear();
    for (const [row, rowSeats] of rows) {
      const line = document.createElement("div");
      line.className = "seat-row";
      line.setAttribute("role", "group");
      line.setAttribute("aria-label", "Row " + row);
      const name = document.createElement("span");
      name.className = "row-name";
      name.textContent = row;
      name.setAttribute("aria-hidden", "true");
      line.append(name);
      rowSeats.sort((a, b) => a.number - b.number);
      for (const seat of rowSeats) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "seat";
        button.dataset.seatId = seat.id;
        button.dataset.label = seat.label;
        button.textContent = seat.number;
        button.addEventListener("click", () => onSeatClick(seat.id));
        buttons.set(seat.id, button);
        line.append(button);
      }
      map.append(line);
    }
  }

  function render(id) {
    const seat = seats.get(id);
    const button = buttons.get(id);
    if (!seat || !button) return;
    const state = displayState(seat);
    if (button.dataset.state === state) return;
    button.dataset.state = state;
    button.dataset.status = state.startsWith("booked") ? "booked" : state === "mine" ? "locked" : state;
    button.className = "seat " + state;
    button.setAttribute("aria-label", `Seat ${seat.label}, ${STATE_TEXT[state]}`);
    button.title = `${seat.label}: ${STATE_TEXT[state]}`;
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

  const ERRORS = {
    seat_locked: (ids) => `Seat ${labels(ids)} is held by someone else right now. Pick another seat.`,
    seat_booked: (ids) => `Seat ${labels(ids)} is already booked.`,
    hold_expired: (ids) => `Your hold on ${labels(ids)} expired before you confirmed.`,
    not_locked_by_you: (ids) => `You do not hold ${labels(ids)}.`,
    too_many_holds: () => "You hold as many seats as allowed. Confirm or release some first.",
    busy: () => "The service is busy. Try again in a moment.",
    throttled: () => "Too many clicks. Try again in a moment.",
    not_authenticated: () => "Your session has ended. Sign in again.",
    forbidden: () => "Your session has ended. Reload the page and sign in again.",
  };

  function sayError(body, status) {
    const code = (body && body.code) || "error";
    const make = ERRORS[code];
    const text = make ? make((body && body.seats) || []) : (body && body.detail) || `The request failed (${status}).`;
    say(text, "error", code);
  }

  function updatePanel() {
    const holds = [...mine].filter((id) => seats.has(id) && isLive(seats.get(id)));
    const confirm = $("confirm");
    if (!confirm) return;
    confirm.disabled = holds.length === 0;
    $("release").disabled = holds.length === 0;
    const countdown = $("countdown");
    if (holds.length === 0) {
      countdown.hidden = true;
      $("hold-status").textContent = "Click a free seat to hold it.";
      return;
    }
    const ends = Math.min(...holds.map((id) => Date.parse(seats.get(id).lockExpiresAt)));
    const left = Math.max(0, Math.ceil((ends - serverNow()) / 1000));
    $("hold-status").textContent = `You hold ${labels(holds)}.`;
    countdown.hidden = false;
    countdown.dataset.seconds = left;
    countdown.textContent = `Confirm within ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  }

  /** Four times a second: holds whose time is up turn free on screen, the countdown moves. */
  function tick() {
    for (const id of [...mine]) {
      const seat = seats.get(id);
      if (seat && seat.status === "locked" && !isLive(seat)) {
        mine.delete(id);
        say(`Your hold on ${seat.label} expired.`, "error", "hold_expired");
      }
    }
    renderAll();
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

  async function write(path, seatIds) {
    const answer = await post(path, { seatIds });
    if (!answer) {
      say(UNREACHABLE, "error", "network");
      return null;
    }
    const body = answer.body;
    if (!answer.ok) {
      sayError(body, answer.status);
      return null;
    }
    if (typeof body.expiresInSeconds === "number" && body.lockExpiresAt) {
      // The server's clock, from the freshest answer: its expiry minus the time left.
      clockOffset = Date.parse(body.lockExpiresAt) - body.expiresInSeconds * 1000 - Date.now();
    }
    return body;
  }

  async function refreshMine() {
    if (!config.user) return;
    const response = await fetch(config.api + "/me/seats", { credentials: "same-origin" }).catch(() => null);
    if (!response || !response.ok) return;
    const body = await response.json();
    mine.clear();
    myBookings.clear();
    for (const seat of body.seats) {
      if (seat.event !== eventId) continue;
      (seat.status === "booked" ? myBookings : mine).add(seat.id);
      apply(seat);
    }
    renderAll();
    updatePanel();
  }

  async function onSeatClick(id) {
    const seat = seats.get(id);
    if (!seat) return;
    if (!config.user) {
      say("Sign in to hold seats.", "info", "sign_in");
      return;
    }
    if (displayState(seat) === "mine") {
      const body = await write("/unlock", [id]);
      if (body) {
        mine.delete(id);
        body.seats.forEach(apply);
        say(`Released ${seat.label}.`, "info");
      }
    } else {
      const body = await write("/lock", [id]);
      if (body) {
        mine.add(id);
        body.seats.forEach(apply);
        say(`${seat.label} is yours for ${Math.round(body.expiresInSeconds)} s. Confirm to book it.`, "info");
      }
    }
    updatePanel();
  }

  async function confirmHolds() {
    const ids = [...mine].filter((id) => isLive(seats.get(id)));
    if (!ids.length) return;
    const body = await write("/confirm", ids);
    if (body) {
      for (const seat of body.seats) {
        mine.delete(seat.id);
        myBookings.add(seat.id);
        apply(seat);
      }
      if (body.booking) {
        say(`Booked ${labels(ids)}. Your booking reference is `, "success");
        const reference = document.createElement("strong");
        reference.className = "reference";
        reference.id = "booking-reference";
        reference.textContent = body.booking.reference;
        $("message").append(reference, ". Enjoy the show!");
      } else {
        say(`Booked ${labels(ids)}. Enjoy the show!`, "success");
      }
      refreshBookings();
    }
    updatePanel();
  }

  async function releaseHolds() {
    const ids = [...mine];
    if (!ids.length) return;
    const body = await write("/unlock", ids);
    if (body) {
      ids.forEach((id) => mine.delete(id));
      body.seats.forEach(apply);
      say(`Released ${labels(ids)}.`, "info");
    }
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

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

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
    const page = await readBookings(config.api + "/me/bookings?pageSize=10");
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
      : "You have no bookings yet. Hold seats and confirm them to book.";
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
    if (message.seats.some((seat) => !buttons.has(seat.id)) || message.seats.length !== buttons.size) {
      seats.clear();
      build(message.seats);
    }
    message.seats.forEach(apply);
    map.setAttribute("aria-busy", "false");
    setConnection("live", "Live: changes appear as they happen.");
    refreshMine();
    refreshBookings();
  }

  function onSeat(seat) {
    const known = seats.get(seat.id);
    // A new hold on a seat whose hold of ours has run out is someone else's.
    if (mine.has(seat.id) && known && !isLive(known) && seat.version > known.version) mine.delete(seat.id);
    const wasMine = mine.has(seat.id);
    const wasBookedByMe = myBookings.has(seat.id);
    if (apply(seat)) {
      if (wasMine && seat.status === "booked") refreshMine(); // booked from another tab
      // Booked or cancelled elsewhere (another tab, the box office): the list follows.
      if ((wasMine && seat.status === "booked") || (wasBookedByMe && seat.status !== "booked")) {
        scheduleBookingsRefresh();
      }
    }
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
      } else if (message.type === "seats") message.seats.forEach(onSeat);
      else if (message.type === "seat") onSeat(message.seat);
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

  if ($("confirm")) {
    $("confirm").addEventListener("click", confirmHolds);
    $("release").addEventListener("click", releaseHolds);
  }
  if ($("bookings-more")) $("bookings-more").addEventListener("click", moreBookings);
  setConnection("connecting", "Connecting…");
  connect();
  setInterval(tick, 250);
})();
