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
 */
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("seat-map-config").textContent);
  const eventId = config.event.id;
  const seats = new Map(); // id -> seat payload, the newest version seen
  const buttons = new Map(); // id -> its button
  const mine = new Set(); // seats the signed-in person holds
  const myBookings = new Set();
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

  async function write(path, seatIds) {
    let response;
    try {
      response = await fetch(config.api + path, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({ seatIds }),
      });
    } catch (error) {
      say("The service cannot be reached. Check your connection and try again.", "error", "network");
      return null;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      sayError(body, response.status);
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
      say(`Booked ${labels(ids)}. Enjoy the show!`, "success");
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

  /* --- The WebSocket ----------------------------------------------------- */

  function setConnection(state, text) {
    const element = $("connection");
    element.dataset.state = state;
    element.textContent = text;
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
  }

  function onSeat(seat) {
    const known = seats.get(seat.id);
    // A new hold on a seat whose hold of ours has run out is someone else's.
    if (mine.has(seat.id) && known && !isLive(known) && seat.version > known.version) mine.delete(seat.id);
    const wasMine = mine.has(seat.id);
    if (apply(seat) && wasMine && seat.status === "booked") refreshMine();
    updatePanel();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${config.socketPath}`);
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "snapshot") onSnapshot(message);
      else if (message.type === "seat") onSeat(message.seat);
    });
    socket.addEventListener("close", (event) => {
      if (event.code === 4404) {
        setConnection("gone", "This event no longer exists.");
        return;
      }
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
  setConnection("connecting", "Connecting…");
  connect();
  setInterval(tick, 250);
})();
