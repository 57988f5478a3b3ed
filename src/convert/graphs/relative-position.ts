/**
 * T5 relative-position buckets, computed here once per model and stored as a lookup table, so the graphs only
 * gather. Follows HF's `_relative_position_bucket` including its float32 log and truncation, which decide the
 * bucket at boundaries.
 */

export function relativePositionBucket(
  relative: number,
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number {
  const f = Math.fround;
  let bucket = 0;
  let buckets = numBuckets;
  let distance: number;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (relative > 0) bucket += buckets;
    distance = Math.abs(relative);
  } else {
    distance = -Math.min(relative, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (distance < maxExact) return bucket + distance;
  const logRatio = f(Math.log(f(distance / maxExact)));
  const scaled = f(f(logRatio / f(Math.log(maxDistance / maxExact))) * (buckets - maxExact));
  return bucket + Math.min(maxExact + Math.trunc(scaled), buckets - 1);
}

/**
 * Bucket of every relative position in [-maxDistance, maxDistance] (index = relative + maxDistance); distances
 * beyond maxDistance land in the last bucket, so clamping into this range is exact.
 */
export function relativePositionTable(
  bidirectional: boolean,
  numBuckets: number,
  maxDistance: number,
): number[] {
  const table: number[] = [];
  for (let r = -maxDistance; r <= maxDistance; r++)
    table.push(relativePositionBucket(r, bidirectional, numBuckets, maxDistance));
  return table;
}
