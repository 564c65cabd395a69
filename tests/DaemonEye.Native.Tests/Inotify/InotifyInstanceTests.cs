using DaemonEye.Native.Inotify;

namespace DaemonEye.Native.Tests.Inotify;

/// <summary>inotify against the real kernel on a unique temp directory (no root needed): names, move cookies, no pid.</summary>
public sealed class InotifyInstanceTests
{
    private const InotifyMask Changes = InotifyMask.Create | InotifyMask.CloseWrite | InotifyMask.Attrib
        | InotifyMask.MovedFrom | InotifyMask.MovedTo | InotifyMask.Delete | InotifyMask.OnlyDirectory;

    private static List<InotifyEvent> Drain(InotifyInstance inotify)
    {
        var events = new List<InotifyEvent>();
        var buffer = new byte[16 * 1024];
        int n;
        while ((n = inotify.Read(buffer)) > 0)
        {
            InotifyInstance.Decode(buffer.AsSpan(0, n), events);
        }

        return events;
    }

    [Fact]
    public void A_watched_directory_reports_create_write_move_chmod_delete_with_a_shared_move_cookie()
    {
        var dir = Directory.CreateTempSubdirectory("de-inotify-").FullName;
        try
        {
            using var inotify = InotifyInstance.Create();
            var wd = inotify.AddWatch(dir, Changes);
            File.WriteAllText(Path.Combine(dir, "a"), "1");
            File.Move(Path.Combine(dir, "a"), Path.Combine(dir, "b"));
            File.SetUnixFileMode(Path.Combine(dir, "b"), UnixFileMode.UserRead);
            File.Delete(Path.Combine(dir, "b"));

            var events = Drain(inotify);
            Assert.Equal(
                [(InotifyMask.Create, "a"), (InotifyMask.CloseWrite, "a"), (InotifyMask.MovedFrom, "a"), (InotifyMask.MovedTo, "b"), (InotifyMask.Attrib, "b"), (InotifyMask.Delete, "b")],
                events.Select(e => (e.Mask, e.Name!)));
            Assert.All(events, e => Assert.Equal(wd, e.Watch));
            Assert.NotEqual(0u, events[2].Cookie);
            Assert.Equal(events[2].Cookie, events[3].Cookie);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Watching_a_path_that_does_not_exist_names_the_path_and_errno()
    {
        using var inotify = InotifyInstance.Create();
        var error = Assert.Throws<KernelException>(() => inotify.AddWatch("/nonexistent-de-test", InotifyMask.Create));
        Assert.Equal(2, error.Errno);
        Assert.Contains("/nonexistent-de-test", error.Message, StringComparison.Ordinal);
    }
}
