namespace DaemonEye.EndToEnd.Tests;

/// <summary>Stdout or stderr for a CLI run in this process: completes <see cref="Marker"/> once the text contains the marker, <see cref="LinesAsync"/> once it has so many lines.</summary>
internal sealed class MarkerWriter(string? marker) : StringWriter(System.Globalization.CultureInfo.InvariantCulture)
{
    private readonly TaskCompletionSource _seen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private readonly List<(int Count, TaskCompletionSource Seen)> _lineWaits = [];

    public Task Marker => _seen.Task;

    /// <summary>Complete lines written so far.</summary>
    public int Lines
    {
        get
        {
            lock (_gate)
            {
                return base.ToString().Count(c => c == '\n');
            }
        }
    }

    /// <summary>Completes once <paramref name="count"/> complete lines have been written.</summary>
    public Task LinesAsync(int count)
    {
        var seen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _lineWaits.Add((count, seen));
            Check();
        }

        return seen.Task;
    }

    public override void Write(char value)
    {
        lock (_gate)
        {
            base.Write(value);
            Check();
        }
    }

    public override void Write(string? value)
    {
        lock (_gate)
        {
            base.Write(value);
            Check();
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        lock (_gate)
        {
            base.Write(buffer, index, count);
            Check();
        }
    }

    public override void WriteLine(string? value)
    {
        lock (_gate)
        {
            base.WriteLine(value);
            Check();
        }
    }

    private void Check()
    {
        var text = base.ToString();
        if (marker is not null && text.Contains(marker, StringComparison.Ordinal))
        {
            _seen.TrySetResult();
        }

        var lines = text.Count(c => c == '\n');
        foreach (var wait in _lineWaits.Where(w => w.Count <= lines).ToList())
        {
            _lineWaits.Remove(wait);
            wait.Seen.TrySetResult();
        }
    }
}
