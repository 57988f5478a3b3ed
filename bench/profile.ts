/** Summarises onnxruntime profiles: where each graph's time goes, by operator type. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface OpShare {
  graph: string;
  op: string;
  ms: number;
  share: number;
}

interface ProfileEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string };
}

/** Top operator types per graph from `<dir>/<graph>_*.json`, as total ms and share of that graph's node time. */
export function summariseProfiles(dir: string, top = 5): OpShare[] {
  const rows: OpShare[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const graph = file.slice(0, file.indexOf('_'));
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
    const byOp = new Map<string, number>();
    let total = 0;
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
      const us = e.dur ?? 0;
      byOp.set(e.args.op_name, (byOp.get(e.args.op_name) ?? 0) + us);
      total += us;
    }
    const sorted = [...byOp].sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [op, us] of sorted) rows.push({ graph, op, ms: us / 1000, share: total ? us / total : 0 });
  }
  return rows;
}
