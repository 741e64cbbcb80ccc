import { useEffect, useRef, useState } from "react";
import { Navigate } from "react-router";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Card } from "@/components/ui/card";
import { FormError } from "@/components/ui/field";
import type { GetOverviewResponse } from "@/gen/quickchat/v1/admin_pb";
import { problem } from "@/lib/errors";
import { userClients } from "@/lib/session";
import { useSession } from "@/lib/useSession";

const EVERY_MS = 2_000;

interface Reading {
  at: number;
  sent: bigint;
  delivered: bigint;
  persisted: bigint;
}

const perSecond = (now: bigint, before: bigint, ms: number) => (ms > 0 ? (Number(now - before) * 1000) / ms : 0);

/** The operators' view: this node's rooms with their streams and message rates, and every node of the cluster. */
export function Admin() {
  const session = useSession();
  const [overview, setOverview] = useState<GetOverviewResponse | null>(null);
  const [rates, setRates] = useState<{ sent: number; delivered: number; persisted: number } | null>(null);
  const [error, setError] = useState<string>();
  const last = useRef<Reading | null>(null);

  useEffect(() => {
    if (!session) return;
    let stopped = false;
    const poll = async () => {
      try {
        const o = await userClients.admin.getOverview({});
        if (stopped) return;
        setOverview(o);
        setError(undefined);
        const n = o.node;
        if (n) {
          const now: Reading = { at: Date.now(), sent: n.messagesSent, delivered: n.messagesDelivered, persisted: n.messagesPersisted };
          const before = last.current;
          if (before) {
            const ms = now.at - before.at;
            setRates({
              sent: perSecond(now.sent, before.sent, ms),
              delivered: perSecond(now.delivered, before.delivered, ms),
              persisted: perSecond(now.persisted, before.persisted, ms),
            });
          }
          last.current = now;
        }
      } catch (err) {
        if (!stopped) setError(problem(err).message);
      }
    };
    void poll();
    const timer = setInterval(poll, EVERY_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [session]);

  if (!session) return <Navigate to="/sign-in?next=%2Fadmin" replace />;
  const node = overview?.node;

  return (
    <section className="mx-auto w-full max-w-5xl px-4 py-8">
      <h1 className="mb-4 text-2xl font-bold">Admin</h1>
      <FormError>{error}</FormError>
      {node && (
        <Card className="mb-6" aria-label="This node">
          <h2 className="mb-2 text-lg font-semibold">This node</h2>
          <p className="mb-3 text-sm break-words text-slate-600">{node.description}</p>
          <dl className="grid grid-cols-2 gap-3 text-sm sm:grid-cols-4">
            <Stat label="Open streams" value={String(node.openStreams)} />
            <Stat label="Messages sent" value={`${node.messagesSent}${rates ? ` (${rates.sent.toFixed(1)}/s)` : ""}`} />
            <Stat label="Delivered" value={`${node.messagesDelivered}${rates ? ` (${rates.delivered.toFixed(1)}/s)` : ""}`} />
            <Stat label="Persisted" value={`${node.messagesPersisted}${rates ? ` (${rates.persisted.toFixed(1)}/s)` : ""}`} />
          </dl>
          <p className="mt-3 text-xs text-slate-500">
            Up since {node.startedAt ? new Date(timestampMs(node.startedAt)).toLocaleString() : "?"} · version {node.version}
          </p>
        </Card>
      )}
      {overview && overview.nodes.length > 0 && (
        <>
          <h2 className="mb-2 text-lg font-semibold">Nodes</h2>
          <div className="mb-6 overflow-x-auto">
            <table className="w-full text-left text-sm" aria-label="Nodes">
              <thead>
                <tr className="border-b border-slate-200">
                  <th className="py-2 pr-4">Node</th>
                  <th className="py-2 pr-4">Open streams</th>
                  <th className="py-2 pr-4">Rooms</th>
                  <th className="py-2 pr-4">Sent</th>
                  <th className="py-2 pr-4">Delivered</th>
                  <th className="py-2 pr-4">Persisted</th>
                  <th className="py-2">Reported</th>
                </tr>
              </thead>
              <tbody>
                {overview.nodes.map((n) => (
                  <tr key={n.nodeId} className="border-b border-slate-100">
                    <td className="py-2 pr-4 font-mono text-xs" title={n.description}>
                      {n.nodeId.slice(0, 8)}
                      {n.nodeId === node?.nodeId ? " (this one)" : ""}
                    </td>
                    <td className="py-2 pr-4">{String(n.openStreams)}</td>
                    <td className="py-2 pr-4">{String(n.rooms)}</td>
                    <td className="py-2 pr-4">{String(n.messagesSent)}</td>
                    <td className="py-2 pr-4">{String(n.messagesDelivered)}</td>
                    <td className="py-2 pr-4">{String(n.messagesPersisted)}</td>
                    <td className="py-2">{n.reportedAt ? new Date(timestampMs(n.reportedAt)).toLocaleTimeString() : "?"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {overview && (
        <>
          <h2 className="mb-2 text-lg font-semibold">Rooms with open streams</h2>
          {overview.rooms.length === 0 ? (
            <p className="text-slate-600">No room has a stream open on this node.</p>
          ) : (
            <div className="overflow-x-auto">
              <table className="w-full text-left text-sm" aria-label="Rooms">
                <thead>
                  <tr className="border-b border-slate-200">
                    <th className="py-2 pr-4">Room</th>
                    <th className="py-2 pr-4">Streams here</th>
                    <th className="py-2">Online</th>
                  </tr>
                </thead>
                <tbody>
                  {overview.rooms.map((r) => (
                    <tr key={r.groupId} className="border-b border-slate-100">
                      <td className="py-2 pr-4 font-medium">{r.title || r.groupId}</td>
                      <td className="py-2 pr-4">{String(r.localStreams)}</td>
                      <td className="py-2">{r.online.map((m) => m.name).join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <div>
      <dt className="text-slate-500">{label}</dt>
      <dd className="font-semibold">{value}</dd>
    </div>
  );
}
