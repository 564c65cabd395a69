namespace DaemonEye.EndToEnd.Tests;

/// <summary>What a test runs as another uid is staged where that uid can read it, wherever the checkout lives.</summary>
public sealed class OtherUserCliTests
{
    private const UnixFileMode OthersTraverse = UnixFileMode.OtherExecute;
    private const UnixFileMode OthersRead = UnixFileMode.OtherRead;

    [Fact]
    public void The_staged_cli_is_outside_the_checkout_readable_by_every_uid_and_removed_on_dispose()
    {
        var source = Path.GetDirectoryName(Paths.CliDll)!;
        string directory;
        using (var cli = OtherUserCli.Stage())
        {
            directory = cli.Directory;
            Assert.False(directory.StartsWith(Paths.RepositoryRoot + "/", StringComparison.Ordinal), directory);
            Assert.True(File.Exists(cli.Dll), cli.Dll);

            // Every directory from / down to the stage lets others through.
            for (var dir = new DirectoryInfo(directory); dir is not null; dir = dir.Parent)
            {
                Assert.True((dir.UnixFileMode & OthersTraverse) != 0, $"{dir.FullName} is {dir.UnixFileMode}");
            }

            // The same files as the build output, each readable by others, each directory listable.
            var files = Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories).ToList();
            Assert.Equal(
                Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(source, f)).Order(StringComparer.Ordinal),
                files.Select(f => Path.GetRelativePath(directory, f)).Order(StringComparer.Ordinal));
            Assert.All(files, f => Assert.True((File.GetUnixFileMode(f) & OthersRead) != 0, f));
            Assert.All(Directory.EnumerateDirectories(directory, "*", SearchOption.AllDirectories).Append(directory),
                d => Assert.Equal(OthersRead | OthersTraverse, File.GetUnixFileMode(d) & (OthersRead | OthersTraverse)));
        }

        Assert.False(Directory.Exists(directory), directory);
    }
}
