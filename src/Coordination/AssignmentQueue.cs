namespace DaemonEye.Coordination;

/// <summary>
/// Assignments waiting for a free collector instance: higher priority first, then first come first
/// served, bounded by <c>coordination.max_queued_tasks</c>. Not thread-safe: the coordinator holds
/// its lock around every call.
/// </summary>
internal sealed class AssignmentQueue(int capacity)
{
    private readonly SortedSet<Assignment> _waiting = new(Order.Instance);
    private long _arrivals;

    public int Count => _waiting.Count;

    public int Capacity { get; } = capacity;

    /// <summary>Whether <paramref name="more"/> assignments still fit.</summary>
    public bool HasRoomFor(int more) => _waiting.Count + more <= Capacity;

    /// <summary>The next arrival number (ties between equal priorities are broken by it).</summary>
    public long NextArrival() => ++_arrivals;

    /// <summary>Adds an assignment (again, after its instance failed); adding one already waiting does nothing.</summary>
    public void Enqueue(Assignment assignment) => _waiting.Add(assignment);

    public bool Remove(Assignment assignment) => _waiting.Remove(assignment);

    public void Clear() => _waiting.Clear();

    /// <summary>
    /// Offers every waiting assignment, in order, to <paramref name="take"/>; those it takes leave the
    /// queue. Returns them in the order taken.
    /// </summary>
    public List<T> Drain<T>(Func<Assignment, T?> take)
        where T : class
    {
        var started = new List<T>();
        if (_waiting.Count == 0)
        {
            return started;
        }

        List<Assignment>? taken = null;
        foreach (var assignment in _waiting)
        {
            if (take(assignment) is { } result)
            {
                (taken ??= []).Add(assignment);
                started.Add(result);
            }
        }

        foreach (var assignment in taken ?? [])
        {
            _waiting.Remove(assignment);
        }

        return started;
    }

    /// <summary>Higher priority first, then first come first served.</summary>
    private sealed class Order : IComparer<Assignment>
    {
        public static readonly Order Instance = new();

        public int Compare(Assignment? x, Assignment? y)
        {
            if (ReferenceEquals(x, y))
            {
                return 0;
            }

            var byPriority = y!.Run.Spec.Priority.CompareTo(x!.Run.Spec.Priority);
            return byPriority != 0 ? byPriority : x.Arrival.CompareTo(y.Arrival);
        }
    }
}
