namespace DaemonEye.Gateway.Durability;

/// <summary>
/// The messages a durable pump has handed over and not yet seen acknowledged, in log order, with the
/// bytes each costs. Acks are cumulative (<see cref="ReleaseThrough"/>, the bus's DurableAck) or single
/// (<see cref="Release"/>, an MQTT PUBACK, in any order). Not thread-safe: the pump's lock guards it.
/// </summary>
/// <remarks>
/// A ring of entries sorted by sequence (the pump adds them in log order): adding and a cumulative ack
/// cost O(1) per message with no allocation once the ring has grown to the window; a single ack is a
/// binary search that marks its entry released, and released entries leave when they reach the head.
/// When the ring is full and at most half of it is still in flight, it is compacted instead of grown,
/// so one message never acknowledged cannot make it grow past twice the window.
/// </remarks>
internal sealed class InFlightWindow
{
    private const int Released = -1;

    private ulong[] _sequences = new ulong[16];
    private int[] _bytes = new int[16]; // Released once single-acknowledged
    private int _head;
    private int _length; // entries in the ring, released ones included
    private int _count;
    private long _totalBytes;

    /// <summary>Messages in flight.</summary>
    public int Count => _count;

    /// <summary>Bytes in flight (as charged by <see cref="Add"/>).</summary>
    public long Bytes => _totalBytes;

    /// <summary>Entries the ring has room for now (tests: its bound).</summary>
    internal int Capacity => _sequences.Length;

    /// <summary>The lowest sequence in flight, if any.</summary>
    public bool TryGetOldest(out ulong sequence)
    {
        sequence = _length > 0 ? _sequences[_head] : 0;
        return _length > 0;
    }

    /// <summary>Adds <paramref name="sequence"/>, higher than every sequence added before, costing <paramref name="bytes"/>.</summary>
    public void Add(ulong sequence, int bytes)
    {
        if (_length == _sequences.Length)
        {
            Resize(_count <= _length / 2 ? _sequences.Length : _sequences.Length * 2);
        }

        var at = Slot(_length);
        _sequences[at] = sequence;
        _bytes[at] = bytes;
        _length++;
        _count++;
        _totalBytes += bytes;
    }

    /// <summary>A cumulative ack: releases every message up to <paramref name="sequence"/>.</summary>
    public void ReleaseThrough(ulong sequence)
    {
        while (_length > 0 && _sequences[_head] <= sequence)
        {
            Forget(_head);
            Pop();
        }

        DropReleasedHead();
    }

    /// <summary>A single ack: releases <paramref name="sequence"/>; false when it is not in flight.</summary>
    public bool Release(ulong sequence)
    {
        int low = 0, high = _length - 1;
        while (low <= high)
        {
            var middle = low + ((high - low) / 2);
            var at = Slot(middle);
            var found = _sequences[at];
            if (found == sequence)
            {
                if (_bytes[at] == Released)
                {
                    return false;
                }

                Forget(at);
                _bytes[at] = Released;
                DropReleasedHead();
                return true;
            }

            if (found < sequence)
            {
                low = middle + 1;
            }
            else
            {
                high = middle - 1;
            }
        }

        return false;
    }

    private int Slot(int index) => (_head + index) % _sequences.Length;

    private void Forget(int at)
    {
        if (_bytes[at] != Released)
        {
            _count--;
            _totalBytes -= _bytes[at];
        }
    }

    private void Pop()
    {
        _head = (_head + 1) % _sequences.Length;
        _length--;
    }

    private void DropReleasedHead()
    {
        while (_length > 0 && _bytes[_head] == Released)
        {
            Pop();
        }
    }

    /// <summary>Copies the entries still in flight, in order, to the start of new arrays of <paramref name="capacity"/>.</summary>
    private void Resize(int capacity)
    {
        var sequences = new ulong[capacity];
        var bytes = new int[capacity];
        var kept = 0;
        for (var i = 0; i < _length; i++)
        {
            var at = Slot(i);
            if (_bytes[at] != Released)
            {
                sequences[kept] = _sequences[at];
                bytes[kept++] = _bytes[at];
            }
        }

        _sequences = sequences;
        _bytes = bytes;
        _head = 0;
        _length = kept;
    }
}
