using System.Runtime.CompilerServices;
using MaskBit.Kernels;

namespace MaskBit.Autograd;

/// <summary>
/// What recorded backward functions still read (torch's save_for_backward), counted per storage: every op declares
/// the tensors its backward reads when it records itself (<see cref="Tape.Record"/>), and the full backward drops a
/// node's count once its backward has run. A storage that only backward functions still refer to — an intermediate
/// of a layer that has returned (<see cref="TensorScope.Chain"/>) — is released as soon as its last reader has run,
/// and one that no backward reads is released when its layer returns, so a training step holds what its backward
/// needs instead of every activation of its forward. The table is weak: a graph that is dropped without a backward
/// takes its counts with it (its storages then go back with their scope).
/// </summary>
internal static class SavedTensors
{
    private sealed class Entry
    {
        public int Readers;
        /// <summary>Nothing outside the tape refers to the storage any more: release it when the readers are done.</summary>
        public bool BackwardOnly;
    }

    private static readonly ConditionalWeakTable<Storage, Entry> Entries = new();

    /// <summary>Counts one more reader of each tensor's storage (a node just recorded).</summary>
    public static void Hold(Tensor[] saved)
    {
        foreach (var t in saved) Interlocked.Increment(ref Entries.GetOrCreateValue(t.Storage).Readers);
    }

    /// <summary>A node's backward has run and will not run again: its saved storages lose a reader, and those that
    /// were left to the tape alone are released when none remains.</summary>
    public static void Drop(Tensor[] saved)
    {
        foreach (var t in saved)
        {
            if (!Entries.TryGetValue(t.Storage, out var entry)) continue;
            if (Interlocked.Decrement(ref entry.Readers) > 0 || !entry.BackwardOnly) continue;
            Entries.Remove(t.Storage);
            TensorScope.Release(t.Storage);
        }
    }

    public static bool IsSaved(Storage storage) => Entries.TryGetValue(storage, out var entry) && Volatile.Read(ref entry.Readers) > 0;

    /// <summary>The caller no longer refers to <paramref name="storage"/>: release it now if no backward reads it,
    /// else when the last one that does has run. Returns true if it was released now.</summary>
    public static bool ReleaseWhenUnread(Storage storage)
    {
        if (Entries.TryGetValue(storage, out var entry) && Volatile.Read(ref entry.Readers) > 0)
        {
            entry.BackwardOnly = true;
            return false;
        }
        TensorScope.Release(storage);
        return true;
    }
}
