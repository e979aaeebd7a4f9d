using System.Runtime.InteropServices;

namespace MaskBit.Kernels.Cpu;

// The test hook that checks Sgemm's packing scratch. The pool hands out arrays of exactly the length asked for, and a
// write past one lands silently in the next heap object: an overrun shows only as an occasional crash (it did once, in
// CI on a fresh clone). Under the guard every packed product runs on scratch that has no slack and a canary behind it.
internal static unsafe partial class Sgemm
{
    private static ScratchGuard? _guard;

    /// <summary>Test hook: until the scope is disposed, every packed <see cref="Run"/> ignores the caller's scratch and
    /// packs into blocks of exactly <see cref="GemmBlocking.PackedALength"/> and <see cref="GemmBlocking.PackedBLength"/>
    /// floats that start 4 bytes past a 64-byte boundary (so aligning the panels uses up the most slack), filled with
    /// NaN (a float read before it was packed reaches C) and followed by a canary as long again; Run throws when a
    /// canary float was written. Blockings given replace the cache blocks, and callers that size their scratch by
    /// <see cref="BlockingFor"/> see them too: small blocks make small products cross every K, M and N block boundary.
    /// Process-wide and one scope at a time: for tests that do not run in parallel with others.</summary>
    internal static IDisposable GuardScratch(GemmBlocking? ymm = null, GemmBlocking? zmm = null)
    {
        var guard = new ScratchGuard(ymm, zmm);
        if (Interlocked.CompareExchange(ref _guard, guard, null) != null) throw new InvalidOperationException("a scratch guard is already active");
        return guard;
    }

    private static void RunGuarded<TA, TB>(Isa isa, int m, int n, int k, MatrixView<TA> a, MatrixView<TB> b, float* c, int ldc, float alpha, float beta)
        where TA : unmanaged where TB : unmanaged
    {
        var blocking = BlockingFor(isa);
        using var packA = new GuardedScratch(blocking.PackedALength);
        using var packB = new GuardedScratch(blocking.PackedBLength);
        Packed(isa, m, n, k, a, b, c, ldc, alpha, beta, packA.Start, packB.Start);
        packA.Check($"A of {m}×{k}");
        packB.Check($"B of {k}×{n}");
    }

    private sealed class ScratchGuard(GemmBlocking? ymm, GemmBlocking? zmm) : IDisposable
    {
        public GemmBlocking? Blocking(Isa isa) => isa == Isa.Avx512 ? zmm : ymm;

        public void Dispose() => Interlocked.CompareExchange(ref _guard, null, this);
    }

    /// <summary>Length floats of NaN at Start, then as many canary floats.</summary>
    private readonly struct GuardedScratch : IDisposable
    {
        private const uint Poison = 0x7FC0DEAD;     // a quiet NaN that no packing of finite operands writes
        private readonly float* _block;
        private readonly int _length;

        public GuardedScratch(int length)
        {
            _length = length;
            _block = (float*)NativeMemory.AlignedAlloc((nuint)(2L * length + 16) * sizeof(float), 64);
            new Span<uint>(Start, 2 * length).Fill(Poison);
        }

        public float* Start => _block + 1;

        public void Check(string what)
        {
            var canary = new ReadOnlySpan<uint>(Start + _length, _length);
            int first = canary.IndexOfAnyExcept(Poison);
            if (first < 0) return;
            int last = canary.LastIndexOfAnyExcept(Poison);
            throw new InvalidOperationException(
                $"Sgemm wrote past its packing scratch for {what}: {_length} floats, written at +{first}..+{last} beyond the end");
        }

        public void Dispose() => NativeMemory.AlignedFree(_block);
    }
}
