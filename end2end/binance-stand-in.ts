// A local stand-in for the Binance Spot Test Network, for the end-to-end suite (the real one is
// not reachable here). It knows one key, checks X-MBX-APIKEY, the timestamp and the HMAC-SHA256
// signature over the query string followed by the body, and answers the endpoints CryptoPulse
// uses: the account, the ticker, and placing, looking up and cancelling orders by client order
// id. Like the real testnet it has no /sapi endpoints. The server's own tests have a fuller
// stand-in (server/tests/api/binance.rs); this one only serves the browser flows.
import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";

export const BINANCE_KEY = "e2eBinanceTestnetKey0000000000000000000000000000000000000000007d1f";
/** The test's secret: scripts/test.sh searches the server log for it afterwards. */
export const BINANCE_SECRET = process.env.E2E_KEY_SECRET ?? "e2e-secret-not-set-0123456789abcdef";

export const BINANCE_PRICES: Record<string, string> = {
  BTCUSDT: "65000.00000000",
  ETHUSDT: "3200.00000000",
  SOLUSDT: "150.00000000",
};

type BookOrder = Record<string, string | number>;

function answer(res: http.ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function refuse(res: http.ServerResponse, status: number, code: number, msg: string) {
  answer(res, status, { code, msg });
}

function signatureValid(payload: string, signature: string): boolean {
  const expected = createHmac("sha256", BINANCE_SECRET).update(payload).digest();
  const given = Buffer.from(signature, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Starts the stand-in on `port` (127.0.0.1); resolves with a function that stops it. */
export async function startBinanceStandIn(port: number): Promise<() => Promise<void>> {
  const book: BookOrder[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://stand-in");
      const query = url.search.replace(/^\?/, "");
      // The best bid and ask: the server quotes the ask (what a buy pays now).
      if (url.pathname === "/api/v3/ticker/bookTicker" && req.method === "GET") {
        const symbol = url.searchParams.get("symbol") ?? "";
        const price = BINANCE_PRICES[symbol];
        return price
          ? answer(res, 200, { symbol, bidPrice: price, bidQty: "1.00000000", askPrice: price, askQty: "1.00000000" })
          : refuse(res, 400, -1121, "Invalid symbol.");
      }
      if (url.pathname !== "/api/v3/account" && url.pathname !== "/api/v3/order") {
        res.writeHead(404).end();
        return;
      }
      if (req.headers["x-mbx-apikey"] !== BINANCE_KEY) {
        return refuse(res, 401, -2015, "Invalid API-key, IP, or permissions for action.");
      }
      const total = query + body;
      const at = total.lastIndexOf("&signature=");
      if (at < 0) return refuse(res, 400, -1102, "Mandatory parameter 'signature' was not sent.");
      const payload = total.slice(0, at);
      if (!signatureValid(payload, total.slice(at + "&signature=".length))) {
        return refuse(res, 400, -1022, "Signature for this request is not valid.");
      }
      const fields = new URLSearchParams(payload);
      const timestamp = Number(fields.get("timestamp"));
      if (!(Math.abs(Date.now() - timestamp) < Number(fields.get("recvWindow") ?? 5000))) {
        return refuse(res, 400, -1021, "Timestamp for this request is outside of the recvWindow.");
      }
      if (url.pathname === "/api/v3/account") {
        return answer(res, 200, { canTrade: true, canWithdraw: true, canDeposit: true, accountType: "SPOT", balances: [], permissions: ["SPOT"] });
      }
      const symbol = fields.get("symbol") ?? "";
      if (req.method === "POST") {
        const price = BINANCE_PRICES[symbol];
        if (!price) return refuse(res, 400, -1121, "Invalid symbol.");
        const quantity = Number(fields.get("quantity"));
        const type = fields.get("type");
        const limit = Number(fields.get("price"));
        const side = fields.get("side");
        const marketable = type === "MARKET" || (side === "BUY" ? limit >= Number(price) : limit <= Number(price));
        // Immediate-or-cancel (how the server sends a market order, at its price bound): what
        // cannot fill now expires instead of resting.
        const unfilled = fields.get("timeInForce") === "IOC" ? "EXPIRED" : "NEW";
        const order: BookOrder = {
          symbol,
          orderId: 7_000_000 + book.length,
          clientOrderId: fields.get("newClientOrderId") ?? "",
          status: marketable ? "FILLED" : unfilled,
          type: type ?? "",
          side: side ?? "",
          origQty: quantity.toFixed(8),
          executedQty: (marketable ? quantity : 0).toFixed(8),
          cummulativeQuoteQty: (marketable ? quantity * Number(price) : 0).toFixed(8),
        };
        book.push(order);
        return answer(res, 200, order);
      }
      const id = fields.get("origClientOrderId");
      const order = [...book].reverse().find((o) => o.clientOrderId === id && o.symbol === symbol);
      if (req.method === "GET") {
        return order ? answer(res, 200, order) : refuse(res, 400, -2013, "Order does not exist.");
      }
      if (req.method === "DELETE" && order && order.status === "NEW") {
        order.status = "CANCELED";
        return answer(res, 200, order);
      }
      return refuse(res, 400, -2011, "Unknown order sent.");
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      // The app keeps idle keep-alive connections open; close() alone would wait them out.
      server.closeAllConnections();
    });
}
