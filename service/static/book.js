// The book panel beside the chart: depth levels of both sides at the crosshair's instant,
// from GET /api/mbo/book?symbol&at&depth ({symbol, at, ts_recv, bids: [{price, price_raw, size, count}], asks}).

import { zoneText } from "./timefmt.js";

function cell(tr, cls, text) {
  const td = document.createElement("td");
  td.className = cls;
  const span = document.createElement("span");
  span.textContent = text;
  td.append(span);
  tr.append(td);
  return td;
}

function priceText(level, decimals) {
  return typeof level.price === "number" ? level.price.toFixed(decimals) : String(level.price);
}

function decimalsOf(levels) {
  let d = 2;
  for (const l of levels) {
    const s = String(l.price);
    const i = s.indexOf(".");
    if (i >= 0) d = Math.max(d, Math.min(9, s.length - i - 1));
  }
  return d;
}

export class BookPanel {
  constructor(root, depth) {
    this.depth = depth;
    this.head = root.querySelector("#book-head");
    this.asks = root.querySelector("#book-asks");
    this.bids = root.querySelector("#book-bids");
    this.spread = root.querySelector("#book-spread");
    this.note = root.querySelector("#book-note");
    root.querySelector("#book-depth").textContent = `(depth ${depth})`;
  }

  /** Empty the ladder and show ``text`` instead. */
  message(text) {
    this.head.textContent = "";
    this.asks.replaceChildren();
    this.bids.replaceChildren();
    this.spread.replaceChildren();
    this.note.textContent = text;
    this.note.hidden = !text;
  }

  /** Draw ``book`` (the route's JSON, ns as digit strings); times shown in ``tz``. */
  render(book, tz) {
    const asks = book.asks || [];
    const bids = book.bids || [];
    const dec = decimalsOf([...asks, ...bids]);
    let max = 1;
    for (const l of [...asks, ...bids]) max = Math.max(max, l.size);
    const rows = (levels, tbody) => {
      tbody.replaceChildren();
      for (const l of levels) {
        const tr = document.createElement("tr");
        cell(tr, "count", String(l.count));
        const size = cell(tr, "size", String(l.size));
        const bar = document.createElement("div");
        bar.className = "bar";
        bar.style.width = `${Math.max(2, (100 * l.size) / max)}%`;
        size.prepend(bar);
        cell(tr, "price", priceText(l, dec));
        tbody.append(tr);
      }
    };
    rows([...asks].reverse(), this.asks);
    rows(bids, this.bids);
    this.spread.replaceChildren();
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 3;
    if (asks.length && bids.length && typeof asks[0].price === "number") {
      const spread = asks[0].price - bids[0].price;
      td.textContent = `spread ${spread.toFixed(dec)}  mid ${((asks[0].price + bids[0].price) / 2).toFixed(dec + 1)}`;
    } else {
      td.textContent = asks.length || bids.length ? "one-sided book" : "empty book";
    }
    tr.append(td);
    this.spread.append(tr);
    const time = (ns) => zoneText(BigInt(ns), tz).slice(11); // the date is on the chart
    const lines = [`${book.symbol} at   ${time(book.at)}`];
    if (book.ts_recv !== undefined && book.ts_recv !== null) lines.push(`last record ${time(book.ts_recv)}`);
    this.head.textContent = lines.join("\n");
    this.note.hidden = true;
  }
}
