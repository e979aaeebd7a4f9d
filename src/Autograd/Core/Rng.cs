namespace MaskBit.Autograd;

/// <summary>A small seedable random generator (xoshiro256**) whose state can be saved in a checkpoint and
/// restored, so that a resumed run draws exactly what the uninterrupted run would have drawn.</summary>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;

    public Rng(ulong seed)
    {
        // SplitMix64 expands the seed into a non-zero state.
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        if (_replaying != null) return _replaying.Next(this);
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9, t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t; _s3 = ulong.RotateLeft(_s3, 45);
        _recording?.Add((this, result));
        return result;
    }

    // Activation checkpointing runs a block twice (forward without a tape, again in the backward); the second run
    // must draw the same dropout masks without advancing any generator. The first run records this thread's draws,
    // the second is served from the record.
    [ThreadStatic] private static List<(Rng Source, ulong Value)>? _recording;
    [ThreadStatic] private static RngReplay? _replaying;

    /// <summary>Within the returned scope every draw of any generator on this thread is appended to
    /// <paramref name="draws"/>.</summary>
    internal static IDisposable Record(List<(Rng Source, ulong Value)> draws)
    {
        var previous = _recording;
        _recording = draws;
        return new Restore(() => _recording = previous);
    }

    /// <summary>Within the returned scope draws return the recorded values in order and leave the generators as
    /// they are; a draw from another generator or past the record's end throws.</summary>
    internal static IDisposable Replay(List<(Rng Source, ulong Value)> draws)
    {
        var previous = _replaying;
        _replaying = new RngReplay(draws);
        return new Restore(() => _replaying = previous);
    }

    private sealed class RngReplay(List<(Rng Source, ulong Value)> draws)
    {
        private int _next;

        public ulong Next(Rng source)
        {
            if (_next >= draws.Count || !ReferenceEquals(draws[_next].Source, source))
                throw new InvalidOperationException("a checkpointed block drew different random numbers when recomputed than in its forward");
            ulong value = draws[_next++].Value;
            _recording?.Add((source, value));
            return value;
        }
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        private bool _done;
        public void Dispose() { if (!_done) { _done = true; restore(); } }
    }

    /// <summary>Uniform in [0, 1) with 24 random bits (exactly representable in float32).</summary>
    public float NextFloat() => (NextUInt64() >> 40) * (1f / (1 << 24));

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Uniform integer in [0, maxExclusive).</summary>
    public int NextInt(int maxExclusive) => (int)((NextUInt64() >> 33) % (ulong)maxExclusive);

    /// <summary>Standard normal (Box–Muller).</summary>
    public double NextGaussian() => Math.Sqrt(-2.0 * Math.Log(1.0 - NextDouble())) * Math.Cos(2 * Math.PI * NextDouble());

    /// <summary>The state as text (for checkpoints).</summary>
    public string State
    {
        get => $"{_s0:x16}{_s1:x16}{_s2:x16}{_s3:x16}";
        set
        {
            if (value.Length != 64 || !value.All(Uri.IsHexDigit)) throw new FormatException($"invalid RNG state '{value}'");
            _s0 = Convert.ToUInt64(value[..16], 16); _s1 = Convert.ToUInt64(value[16..32], 16);
            _s2 = Convert.ToUInt64(value[32..48], 16); _s3 = Convert.ToUInt64(value[48..], 16);
        }
    }
}
