// Loaded into the SDK and the Testing Toolkit with `node --require` by the e2e harness (e2e/harness/mojaloop.py).
// 1. Every server binds 127.0.0.1, whatever host (or none) the package asks for.
// 2. A port in MOJAFLOW_E2E_PORT_MAP ("5050=41234,...") is replaced: TTK hard-codes its admin API on 5050, and
//    parallel runs (or another stack on this machine) must not collide there.
// 3. Any outgoing connection or DNS look-up for a host other than loopback fails at once, with a line on stderr
//    starting "[loopback]" (the harness fails the run if it finds one).
'use strict';
const net = require('net');
const dns = require('dns');

const portMap = new Map(
  (process.env.MOJAFLOW_E2E_PORT_MAP || '')
    .split(',')
    .filter(Boolean)
    .map((pair) => pair.split('=').map(Number)),
);

const loopback = (host) => {
  if (host === undefined || host === null || host === '' || host === 'localhost') return true;
  const h = String(host).toLowerCase();
  return h === '::1' || /^127\./.test(h) || /^::ffff:127\./.test(h);
};

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  let options;
  let rest;
  if (args[0] !== null && typeof args[0] === 'object') {
    options = { ...args[0] };
    rest = args.slice(1);
  } else {
    options = {};
    rest = [];
    const positional = args.filter((a) => typeof a !== 'function');
    const callbacks = args.filter((a) => typeof a === 'function');
    if (positional.length > 0 && positional[0] !== undefined && positional[0] !== null) options.port = positional[0];
    if (typeof positional[1] === 'string') options.host = positional[1];
    if (typeof positional[1] === 'number') options.backlog = positional[1];
    if (typeof positional[2] === 'number') options.backlog = positional[2];
    rest = callbacks;
  }
  if (options.path === undefined) {
    const port = Number(options.port || 0);
    if (portMap.has(port)) options.port = portMap.get(port);
    options.host = '127.0.0.1';
  }
  return listen.call(this, options, ...rest);
};

const refuse = (what, host) => {
  process.stderr.write(`[loopback] refused ${what} ${host}\n`);
  const error = new Error(`e2e loopback guard: ${what} ${host} refused`);
  error.code = 'ECONNREFUSED';
  return error;
};

const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  const options = first !== null && typeof first === 'object' ? first : { port: first, host: args[1] };
  if (options.path === undefined && !loopback(options.host)) {
    const error = refuse('connection to', options.host);
    process.nextTick(() => this.destroy(error));
    return this;
  }
  return connect.apply(this, args);
};

const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  if (!loopback(hostname)) {
    const done = typeof options === 'function' ? options : callback;
    const error = refuse('DNS look-up of', hostname);
    process.nextTick(() => done(error));
    return {};
  }
  return lookup.call(this, hostname, options, callback);
};
