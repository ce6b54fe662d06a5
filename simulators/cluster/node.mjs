// One node of plantgate's test MQTT cluster: an aedes broker that shares subscriptions,
// sessions, retained messages and wills with its sibling nodes through one Redis.
//
//   node node.mjs --port 1884 --redis redis://127.0.0.1:6379 --node-id n1
//
// Every option may also come from the environment (PORT, REDIS_URL, NODE_ID, ...).
// Stock aedes acknowledges a QoS 1 PUBLISH before it stores and routes it, so killing a node
// loses messages it already acknowledged. This node stores and routes first (see
// StoreBeforeAck); --stock-puback turns that off, to show what stock aedes loses.

import net from 'node:net'
import { randomUUID } from 'node:crypto'
import { parseArgs } from 'node:util'
import { Aedes } from 'aedes'
import mqemitterRedis from 'mqemitter-redis'
import aedesPersistenceRedis from 'aedes-persistence-redis'

const SYS_PREFIX = '$SYS/'

function options () {
  const env = process.env
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: env.PORT },
      host: { type: 'string', default: env.HOST || '127.0.0.1' },
      redis: { type: 'string', default: env.REDIS_URL || 'redis://127.0.0.1:6379' },
      'node-id': { type: 'string', default: env.NODE_ID },
      // aedes' default is 60 s; wills of a dead node's clients go out 3 to 7 beats after it died
      'heartbeat-ms': { type: 'string', default: env.HEARTBEAT_MS || '1000' },
      // stock aedes-persistence-redis hands a reconnecting session only its first 1,001 queued
      // messages (the rest wait for the next reconnect); a test bed must not hide a backlog
      'max-session-delivery': { type: 'string', default: env.MAX_SESSION_DELIVERY || '1000000' },
      'stock-puback': { type: 'boolean', default: env.STOCK_PUBACK === '1' }
    }
  })
  const port = Number.parseInt(values.port, 10)
  if (!Number.isInteger(port) || port <= 0) throw new Error('--port (or PORT) is required')
  if (!values['node-id']) throw new Error('--node-id (or NODE_ID) is required')
  const redis = new URL(values.redis)
  return {
    port,
    host: values.host,
    redis: { host: redis.hostname, port: Number.parseInt(redis.port || '6379', 10) },
    nodeId: values['node-id'],
    heartbeatMs: Number.parseInt(values['heartbeat-ms'], 10),
    maxSessionDelivery: Number.parseInt(values['max-session-delivery'], 10),
    stockPuback: values['stock-puback']
  }
}

function log (...words) {
  console.log(new Date().toISOString(), ...words)
}

// aedes sends the PUBACK of a QoS 1 message and only then calls publish() (lib/handlers/
// publish.js, enqueuePublish), which stores it for offline sessions and hands it to Redis.
// It does wait for the authorizePublish hook first, so the hook publishes the message and
// the publish() that follows the PUBACK skips the packet it has already seen.
class StoreBeforeAck extends Aedes {
  #routed = new WeakSet()

  publish (packet, client, done) {
    if (typeof client === 'function') {
      done = client
      client = null
    }
    if (this.#routed.has(packet)) {
      this.#routed.delete(packet)
      if (done) setImmediate(done, null)
      return
    }
    super.publish(packet, client, done)
  }

  storeThenAuthorize (client, packet, callback) {
    if (packet.topic.startsWith(SYS_PREFIX)) {
      return callback(new Error(SYS_PREFIX + ' topic is reserved'))
    }
    // QoS 2 is stored before its PUBREC by aedes itself; wills (client null or no cmd)
    // are published by aedes right after this hook, with no acknowledgement to wait for
    if (client === null || packet.cmd !== 'publish' || packet.qos !== 1) {
      return callback(null)
    }
    super.publish(packet, client, (err) => {
      if (err) return callback(err)
      this.#routed.add(packet)
      callback(null)
    })
  }
}

function denySys (client, packet, callback) {
  if (packet.topic.startsWith(SYS_PREFIX)) {
    return callback(new Error(SYS_PREFIX + ' topic is reserved'))
  }
  callback(null)
}

// Resolves once Redis has confirmed a subscription made after aedes' own: the connection
// answers in order, so every subscription aedes made before is live too.
function subscriptionsLive (broker, brokerId) {
  return new Promise((resolve, reject) => {
    broker.subscribe(SYS_PREFIX + brokerId + '/ready', (packet, cb) => cb(), (err) => {
      if (err) reject(err)
      else resolve()
    })
  })
}

async function main () {
  const opts = options()
  // The broker id keys stored packets in Redis (packet:<id>:<counter>, the counter starting
  // at 0): a restarted node must not reuse its predecessor's id, or it overwrites packets
  // still queued for offline sessions. No ':' in it: the persistence splits keys on ':'.
  const brokerId = `${opts.nodeId}-${randomUUID()}`
  const mq = mqemitterRedis({ ...opts.redis, matchEmptyLevels: true })
  const persistence = aedesPersistenceRedis({
    ...opts.redis,
    maxSessionDelivery: opts.maxSessionDelivery
  })
  const settings = { id: brokerId, mq, persistence, heartbeatInterval: opts.heartbeatMs }
  const broker = opts.stockPuback ? new Aedes(settings) : new StoreBeforeAck(settings)
  broker.authorizePublish = opts.stockPuback
    ? denySys
    : broker.storeThenAuthorize.bind(broker)
  await broker.listen()
  await subscriptionsLive(broker, brokerId)

  broker.on('client', (client) => log('client connected', client.id))
  broker.on('clientDisconnect', (client) => log('client disconnected', client.id))
  broker.on('clientError', (client, err) => log('client error', client.id, err.message))
  broker.on('connectionError', (client, err) => log('connection error', err.message))
  broker.on('keepaliveTimeout', (client) => log('keepalive timeout', client.id))
  broker.on('error', (err) => log('broker error', err.message))
  mq.state.on('error', (err) => log('redis pub/sub error', err.message))

  const server = net.createServer(broker.handle)
  server.on('error', (err) => {
    log('listener error', err.message)
    process.exit(1)
  })
  await new Promise((resolve) => server.listen(opts.port, opts.host, resolve))
  log(
    'listening', `${opts.host}:${opts.port}`, 'node', opts.nodeId, 'broker', brokerId,
    'redis', `${opts.redis.host}:${opts.redis.port}`,
    opts.stockPuback ? 'PUBACK before store (stock aedes)' : 'store before PUBACK'
  )

  let stopping = false
  function stop (signal) {
    if (stopping) return
    stopping = true
    log('stopping on', signal)
    server.close()
    broker.close(() => {
      persistence.destroy()
        .catch((err) => log('persistence close error', err.message))
        .finally(() => {
          log('stopped')
          process.exit(0)
        })
    })
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  log('cannot start:', err.message)
  process.exit(1)
})
